//! Errors of the plugin's kubeconfig and credentials, worded so that they
//! never print a secret: a kubeconfig that fails to load is named by its
//! file and the position of the problem only (the parser's own message
//! quotes the neighbouring lines, `client-key-data` and `token:`
//! included), and an exec credential plugin that fails is named by its
//! command and exit status only (kube's message prints the command's
//! environment, the `env:` values of the kubeconfig, and its output).

use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
};

use kube::{client::AuthError, config::KubeconfigError};

use crate::core::printable;

/// The credential command of the kubeconfig's user, once the config is
/// loaded: the only thing about it an error names.
static CREDENTIAL_COMMAND: OnceLock<String> = OnceLock::new();

/// Remembers the credential command of the loaded config.
pub(super) fn remember_credential_command(config: &kube::Config) {
    let auth = &config.auth_info;
    let command = auth
        .exec
        .as_ref()
        .and_then(|e| e.command.clone())
        .or_else(|| {
            auth.auth_provider
                .as_ref()
                .and_then(|p| p.config.get("cmd-path").cloned())
        });
    if let Some(command) = command {
        let _ = CREDENTIAL_COMMAND.set(command);
    }
}

fn credential_command() -> String {
    match CREDENTIAL_COMMAND.get() {
        Some(command) => format!("{:?}", printable::escape(command)),
        None => "of the kubeconfig's user".to_string(),
    }
}

/// The kubeconfig file in use: the one named, else the first of
/// $KUBECONFIG, else ~/.kube/config.
pub(super) fn kubeconfig_path(named: Option<&Path>) -> String {
    let path = named.map(Path::to_path_buf).or_else(|| {
        std::env::var_os("KUBECONFIG")
            .filter(|v| !v.is_empty())
            .and_then(|v| std::env::split_paths(&v).next())
            .or_else(|| {
                std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".kube/config"))
            })
    });
    path.map_or_else(
        || "the kubeconfig".to_string(),
        |p| printable::escape(&p.display().to_string()).into_owned(),
    )
}

/// What went wrong, from the innermost error of `error`'s chain that is
/// known to be safe to describe; nothing of a kubeconfig's content, a
/// command's environment or its output.
pub(super) fn describe(error: &(dyn std::error::Error + 'static), kubeconfig: &str) -> String {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut innermost = error;
    while let Some(e) = current {
        if let Some(auth) = e.downcast_ref::<AuthError>() {
            return auth_error(auth, kubeconfig);
        }
        if let Some(config) = e.downcast_ref::<KubeconfigError>() {
            return kubeconfig_error(config, kubeconfig);
        }
        if let Some(parse) = e.downcast_ref::<serde_saphyr::Error>() {
            return parse_error(parse, kubeconfig);
        }
        innermost = e;
        current = e.source();
    }
    printable::escape(&innermost.to_string()).into_owned()
}

fn parse_error(error: &serde_saphyr::Error, kubeconfig: &str) -> String {
    match error.location() {
        Some(at) => format!(
            "cannot parse kubeconfig {kubeconfig}: a YAML error at line {}, column {}",
            at.line(),
            at.column()
        ),
        None => format!("cannot parse kubeconfig {kubeconfig}: not valid YAML"),
    }
}

fn io_kind(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        other => other.to_string(),
    }
}

fn path_text(path: &Path) -> String {
    printable::escape(&path.display().to_string()).into_owned()
}

fn kubeconfig_error(error: &KubeconfigError, kubeconfig: &str) -> String {
    use KubeconfigError as E;
    let quoted = |s: &str| format!("{:?}", printable::escape(s));
    match error {
        E::Parse(e) => parse_error(e, kubeconfig),
        E::ReadConfig(io, path) => {
            format!(
                "cannot read kubeconfig {}: {}",
                path_text(path),
                io_kind(io)
            )
        }
        E::LoadContext(name) => format!("the kubeconfig has no context {}", quoted(name)),
        E::LoadClusterOfContext(name) => {
            format!("the kubeconfig has no cluster {}", quoted(name))
        }
        E::CurrentContextNotSet => {
            format!("kubeconfig {kubeconfig} sets no current-context (pass --context)")
        }
        E::MissingClusterUrl => format!("the cluster in kubeconfig {kubeconfig} has no server"),
        E::ParseClusterUrl(_) => {
            format!("the cluster server in kubeconfig {kubeconfig} is not a valid URL")
        }
        E::ParseProxyUrl(_) => {
            format!("the proxy-url in kubeconfig {kubeconfig} is not a valid URL")
        }
        E::LoadCertificateAuthority(_) => format!(
            "cannot load the certificate-authority of the cluster in kubeconfig {kubeconfig}"
        ),
        E::LoadClientCertificate(_) => {
            format!("cannot load the client-certificate of the user in kubeconfig {kubeconfig}")
        }
        E::LoadClientKey(_) => {
            format!("cannot load the client-key of the user in kubeconfig {kubeconfig}")
        }
        E::ParseCertificates(_) => {
            format!("a certificate in kubeconfig {kubeconfig} is not valid PEM")
        }
        // The rest are fixed sentences that quote nothing.
        other => format!("cannot use kubeconfig {kubeconfig}: {other}"),
    }
}

fn auth_error(error: &AuthError, kubeconfig: &str) -> String {
    use AuthError as E;
    let command = credential_command();
    match error {
        E::AuthExecRun { out, .. } => match out.status.code() {
            Some(code) => {
                format!("the credential plugin {command} failed with exit status {code}")
            }
            None => format!("the credential plugin {command} was killed by a signal"),
        },
        E::AuthExecStart(io) => {
            format!(
                "cannot start the credential plugin {command}: {}",
                io_kind(io)
            )
        }
        E::AuthExecParse(_) | E::ExecPluginFailed | E::ParseTokenKey(_) => {
            format!("the credential plugin {command} did not print a usable credential")
        }
        E::AuthExec(_) => format!("the credential plugin {command} failed"),
        E::MissingCommand => {
            format!("the exec credential user in kubeconfig {kubeconfig} names no command")
        }
        E::ReadTokenFile(io, path) => format!(
            "cannot read the token file {}: {}",
            path_text(path),
            io_kind(io)
        ),
        E::InvalidBearerToken(_) => {
            format!("the token of the user in kubeconfig {kubeconfig} is not a valid header value")
        }
        E::InvalidBasicAuth(_) => format!(
            "the username or password in kubeconfig {kubeconfig} is not a valid header value"
        ),
        E::MalformedTokenExpirationDate(_) => format!(
            "the credential plugin {command} gave an expiration time that is not a timestamp"
        ),
        _ => format!("cannot authenticate with the user of kubeconfig {kubeconfig}"),
    }
}
