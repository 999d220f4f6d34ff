//! This replica's identity in the leader-election Lease and on Events.
//! Without `--identity` or `POD_NAME` it is the host name plus a random
//! suffix (as controller-runtime does): two processes on one host (a VM,
//! systemd, host-network pods, two `make run`s) must never share an identity,
//! or both would believe they hold the Lease.

/// Characters of the random suffix (valid in a DNS label).
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
/// Length of the random suffix.
const SUFFIX_LEN: usize = 8;

/// The host name plus a random suffix, unique per process.
pub fn generate() -> String {
    let suffix: String = (0..SUFFIX_LEN)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect();
    with_suffix(&host_name(), &suffix)
}

/// `host-suffix`.
fn with_suffix(host: &str, suffix: &str) -> String {
    format!("{host}-{suffix}")
}

/// `HOSTNAME`, else `/etc/hostname`, else a fixed name.
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "deploymentchannel-operator".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_start_with_the_host_name_and_differ() {
        let host = host_name();
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        for id in [&a, &b] {
            let suffix = id
                .strip_prefix(&format!("{host}-"))
                .unwrap_or_else(|| panic!("{id} starts with {host}-"));
            assert_eq!(suffix.len(), SUFFIX_LEN);
            assert!(suffix.bytes().all(|c| ALPHABET.contains(&c)), "{suffix}");
        }
        assert_eq!(with_suffix("node-1", "abc"), "node-1-abc");
    }
}
