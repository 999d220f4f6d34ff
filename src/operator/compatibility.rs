//! Which Kubernetes versions the operator supports, and what it says about
//! a server outside them.

use k8s_openapi::apimachinery::pkg::version::Info;

/// The oldest supported Kubernetes minor version (1.30): the first with CRD
/// validation ratcheting on by default, on top of GA CEL validation rules
/// with `fieldPath`, `reason` and `messageExpression`.
pub const OLDEST_SUPPORTED_MINOR: u32 = 30;

/// The minor version a server reports (`"36"`, or `"36+"` on some
/// distributions); `None` when it cannot be read.
pub fn minor(info: &Info) -> Option<u32> {
    info.minor
        .trim_end_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .ok()
}

/// A warning for a server older than the oldest supported version.
pub fn too_old(info: &Info) -> Option<String> {
    let minor = minor(info)?;
    (info.major == "1" && minor < OLDEST_SUPPORTED_MINOR).then(|| {
        format!(
            "Kubernetes {} is older than 1.{OLDEST_SUPPORTED_MINOR}, the oldest supported version: \
             the CRDs' validation rules need 1.{OLDEST_SUPPORTED_MINOR} (see docs/compatibility.md)",
            info.git_version
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(minor: &str, git_version: &str) -> Info {
        Info {
            major: "1".into(),
            minor: minor.into(),
            git_version: git_version.into(),
            ..Default::default()
        }
    }

    #[test]
    fn versions_from_the_oldest_supported_on_pass() {
        assert_eq!(too_old(&info("30", "v1.30.0")), None);
        assert_eq!(too_old(&info("36", "v1.36.2")), None);
        assert_eq!(too_old(&info("31+", "v1.31.4-eks")), None);
    }

    #[test]
    fn older_servers_get_a_warning_naming_their_version() {
        let warning = too_old(&info("24", "v1.24.0")).expect("a warning");
        assert!(
            warning.starts_with("Kubernetes v1.24.0 is older than 1.30"),
            "{warning}"
        );
        assert_eq!(minor(&info("29+", "v1.29.1-gke")), Some(29));
    }

    #[test]
    fn an_unreadable_version_is_not_judged() {
        assert_eq!(too_old(&info("", "")), None);
    }
}
