//! `status`: reads channels, PhoneConfigurations and Events with the user's
//! kubeconfig (get and list only) and prints a [`report`]. The same
//! command is the `kubectl interactions` plugin.

pub(crate) mod report;
mod safe_error;

use std::{io::Write, path::PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{
    Api, Client, Config,
    api::ListParams,
    config::{KubeConfigOptions, Kubeconfig},
};

use crate::core::api::{DeploymentChannel, GROUP, PhoneConfiguration, VERSION};
use crate::core::printable;
use report::{ChannelInputs, Fetched, render::Palette};

/// Options of `status`, spelled as kubectl spells them.
#[derive(Args, Debug, Clone, PartialEq)]
pub struct StatusArgs {
    /// What to explain; without it, a summary of the namespace.
    #[command(subcommand)]
    pub target: Option<StatusTarget>,

    /// Namespace (default: the context's namespace, else `default`).
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    /// Summarise every namespace (only without a kind).
    #[arg(short = 'A', long, global = true)]
    pub all_namespaces: bool,

    /// Output format.
    #[arg(short, long, value_enum, global = true, default_value_t = StatusOutput::Text)]
    pub output: StatusOutput,

    /// The kubeconfig context to use (default: the current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,

    /// Path of the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
}

/// The object `status` explains.
#[derive(Subcommand, Debug, Clone, PartialEq)]
pub enum StatusTarget {
    /// A DeploymentChannel: why it is or is not ready, and what to do next.
    #[command(visible_alias = "dchan", alias = "deploymentchannel")]
    Channel {
        /// metadata.name of the DeploymentChannel.
        name: String,
    },
    /// A PhoneConfiguration: its conditions and the channels bound to it.
    #[command(name = "phoneconfiguration", visible_alias = "phonecfg")]
    PhoneConfiguration {
        /// metadata.name of the PhoneConfiguration.
        name: String,
    },
}

/// How `status` prints its report.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusOutput {
    /// A tree for people; coloured on a terminal.
    Text,
    /// One JSON object, for scripts.
    Json,
}

/// Why `status` could not answer, worded for the person who asked.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StatusError(String);

impl StatusError {
    fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// Runs `status`, printing to `out`; `palette` colours the text view.
pub async fn run(
    args: &StatusArgs,
    out: &mut impl Write,
    palette: Palette,
) -> Result<(), StatusError> {
    let client = client(args).await?;
    run_with_client(&client, args, out, palette).await
}

/// [`run`] with a client already made.
pub async fn run_with_client(
    client: &Client,
    args: &StatusArgs,
    out: &mut impl Write,
    palette: Palette,
) -> Result<(), StatusError> {
    if args.all_namespaces && args.target.is_some() {
        return Err(StatusError::new(
            "--all-namespaces (-A) applies only to the summary: give -n NAMESPACE with a channel or phoneconfiguration",
        ));
    }
    let client = client.clone();
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let now = Time(jiff::Timestamp::now());
    let text = match &args.target {
        Some(StatusTarget::Channel { name }) => {
            let mut inputs = channel_inputs(&client, &namespace, name).await?;
            if args.output == StatusOutput::Text {
                inputs = escaped_inputs(inputs);
            }
            let report = report::channel_report(&inputs);
            match args.output {
                StatusOutput::Json => json(&report),
                StatusOutput::Text => report::render::channel(&report, &now, &palette),
            }
        }
        Some(StatusTarget::PhoneConfiguration { name }) => {
            let api: Api<PhoneConfiguration> = Api::namespaced(client.clone(), &namespace);
            let what = Subject::object(
                "PhoneConfiguration",
                "phoneconfigurations",
                name,
                &namespace,
            );
            let pc = match api.get_opt(name).await {
                Ok(Some(pc)) if args.output == StatusOutput::Text => printable::escaped(&pc),
                Ok(Some(pc)) => pc,
                Ok(None) => return Err(not_found(&client, &what).await),
                Err(e) => return Err(explain(&client, &what, "get", e).await),
            };
            let channels = list_channels(&client, Some(&namespace))
                .await
                .map_err(|e| e.0)
                .map(|list| text_safe(args, list));
            let report = report::phone_configuration_report(&pc, &channels);
            match args.output {
                StatusOutput::Json => json(&report),
                StatusOutput::Text => report::render::phone_configuration(&report, &now, &palette),
            }
        }
        None => {
            let scope = (!args.all_namespaces).then_some(namespace.as_str());
            let channels = text_safe(args, list_channels(&client, scope).await?);
            let phone_configurations = list_phone_configurations(&client, scope)
                .await
                .map_err(|e| e.0)
                .map(|list| text_safe(args, list));
            let report = report::summary(scope, &channels, &phone_configurations);
            match args.output {
                StatusOutput::Json => json(&report),
                StatusOutput::Text => report::render::summary(&report, &now, &palette),
            }
        }
    };
    // The fields were escaped before rendering; this is the net behind
    // them (JSON is made safe by `json`).
    let text = match args.output {
        StatusOutput::Text => printable::escape_report(&text),
        StatusOutput::Json => text,
    };
    out.write_all(text.as_bytes())
        .map_err(|e| StatusError::new(format!("cannot write the report: {e}")))
}

/// For the text view: objects whose every string shows its control, C1,
/// bidi and invisible characters escaped (see [`printable`]), so that no
/// identifier, provider, condition message or Event text written by an
/// object's author can drive the reader's terminal.
fn text_safe<T>(args: &StatusArgs, objects: Vec<T>) -> Vec<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + Clone,
{
    match args.output {
        StatusOutput::Text => objects.iter().map(printable::escaped).collect(),
        StatusOutput::Json => objects,
    }
}

fn escaped_inputs(inputs: ChannelInputs) -> ChannelInputs {
    let escape_error = |e: String| printable::escape(&e).into_owned();
    ChannelInputs {
        channel: printable::escaped(&inputs.channel),
        phone_configuration: inputs.phone_configuration.map(|fetched| match fetched {
            Fetched::Found(pc) => Fetched::Found(printable::escaped(&pc)),
            Fetched::NotFound => Fetched::NotFound,
            Fetched::Unreadable(why) => Fetched::Unreadable(escape_error(why)),
        }),
        neighbours: inputs
            .neighbours
            .map(|list| list.iter().map(printable::escaped).collect())
            .map_err(escape_error),
        events: inputs
            .events
            .map(|list| list.iter().map(printable::escaped).collect())
            .map_err(escape_error),
    }
}

fn json(report: &impl serde::Serialize) -> String {
    // As JSON, the values are exact; the characters a terminal would act
    // on are written as \u escapes.
    let mut text = printable::json_safe(
        &serde_json::to_string_pretty(report).expect("reports serialize to JSON"),
    );
    text.push('\n');
    text
}

/// A client from the kubeconfig and context the user named, else as kubectl
/// finds one ($KUBECONFIG, ~/.kube/config, then in-cluster).
async fn client(args: &StatusArgs) -> Result<Client, StatusError> {
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..KubeConfigOptions::default()
    };
    let kubeconfig_path = safe_error::kubeconfig_path(args.kubeconfig.as_deref());
    // Every error below is described by safe_error: the file and position,
    // the command and exit status, never the content of the kubeconfig.
    let describe = |e: &(dyn std::error::Error + 'static)| {
        StatusError::new(safe_error::describe(e, &kubeconfig_path))
    };
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(|e| describe(&e))?;
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| bad_kubeconfig(args, &e, &kubeconfig_path))?
        }
        None if args.context.is_some() => Config::from_kubeconfig(&options)
            .await
            .map_err(|e| bad_kubeconfig(args, &e, &kubeconfig_path))?,
        None => Config::infer().await.map_err(|e| {
            StatusError::new(format!(
                "no cluster to ask: {} (set KUBECONFIG or pass --kubeconfig)",
                safe_error::describe(&e, &kubeconfig_path)
            ))
        })?,
    };
    safe_error::remember_credential_command(&config);
    Client::try_from(config).map_err(|e| {
        StatusError::new(format!(
            "cannot set up a client: {}",
            safe_error::describe(&e, &kubeconfig_path)
        ))
    })
}

fn bad_kubeconfig(
    args: &StatusArgs,
    error: &kube::config::KubeconfigError,
    kubeconfig_path: &str,
) -> StatusError {
    match (&args.context, error) {
        (Some(context), kube::config::KubeconfigError::LoadContext(_)) => {
            StatusError::new(format!(
                "the kubeconfig has no context {:?}",
                printable::escape(context)
            ))
        }
        _ => StatusError::new(safe_error::describe(error, kubeconfig_path)),
    }
}

/// What a request was about, for error messages.
struct Subject {
    /// `DeploymentChannel "x" in namespace "y"`, `DeploymentChannels in namespace "y"`.
    description: String,
    /// The plural resource name, for the RBAC hint.
    resource: &'static str,
    namespace: Option<String>,
    /// A get of one object (a 404 then means it does not exist).
    object: bool,
}

impl Subject {
    fn object(kind: &str, resource: &'static str, name: &str, namespace: &str) -> Self {
        Self {
            description: format!("{kind} {name:?} in namespace {namespace:?}"),
            resource,
            namespace: Some(namespace.to_string()),
            object: true,
        }
    }

    fn list(kind: &str, resource: &'static str, namespace: Option<&str>) -> Self {
        let place = match namespace {
            Some(ns) => format!(" in namespace {ns:?}"),
            None => " in all namespaces".to_string(),
        };
        Self {
            description: format!("{kind}s{place}"),
            resource,
            namespace: namespace.map(str::to_string),
            object: false,
        }
    }
}

/// One line that says what went wrong and what would fix it.
async fn explain(client: &Client, what: &Subject, verb: &str, error: kube::Error) -> StatusError {
    match &error {
        kube::Error::Api(status) if status.code == 403 => {
            let scope = match &what.namespace {
                Some(ns) => format!("in namespace {ns:?}"),
                None => "cluster-wide".to_string(),
            };
            let group = if what.resource == "events" {
                String::new()
            } else {
                format!(".{GROUP}")
            };
            StatusError::new(format!(
                "you may not {verb} {}: ask for {verb} access to {}{group} {scope} (the API server said: {})",
                what.description, what.resource, status.message
            ))
        }
        kube::Error::Api(status) if status.code == 401 => StatusError::new(format!(
            "the API server did not accept your credentials (401 Unauthorized) when reading {}: log in again or check the user of your kubeconfig context",
            what.description
        )),
        kube::Error::Api(status) if status.code == 404 => not_found(client, what).await,
        kube::Error::Api(status) => StatusError::new(format!(
            "cannot {verb} {}: the API server answered {} {}: {}",
            what.description, status.code, status.reason, status.message
        )),
        other => StatusError::new(format!(
            "cannot {verb} {}: {}",
            what.description,
            safe_error::describe(other, &safe_error::kubeconfig_path(None))
        )),
    }
}

/// A 404: the object is missing, or the API itself is (no CRDs).
async fn not_found(client: &Client, what: &Subject) -> StatusError {
    let api_version = format!("{GROUP}/{VERSION}");
    let served = match client.list_api_group_resources(&api_version).await {
        Ok(list) => list.resources.iter().any(|r| r.name == what.resource),
        Err(kube::Error::Api(status)) if status.code == 404 => false,
        Err(_) => true,
    };
    if !served && what.resource != "events" {
        StatusError::new(format!(
            "this cluster does not serve {}.{GROUP} ({api_version}): the CRDs are not installed; install them with `kubectl apply --server-side -k crds/` or `deploymentchannel-operator crd | kubectl apply --server-side -f -`",
            what.resource
        ))
    } else if what.object {
        StatusError::new(format!("{} does not exist", what.description))
    } else {
        StatusError::new(format!("cannot list {}: not found", what.description))
    }
}

/// Reads what a channel report needs; only the channel itself is required.
async fn channel_inputs(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<ChannelInputs, StatusError> {
    let channels: Api<DeploymentChannel> = Api::namespaced(client.clone(), namespace);
    let what = Subject::object("DeploymentChannel", "deploymentchannels", name, namespace);
    let channel = match channels.get_opt(name).await {
        Ok(Some(channel)) => channel,
        Ok(None) => return Err(not_found(client, &what).await),
        Err(e) => return Err(explain(client, &what, "get", e).await),
    };
    let phone_configuration = async {
        let name = report::referenced_phone_configuration(&channel)?;
        let api: Api<PhoneConfiguration> = Api::namespaced(client.clone(), namespace);
        Some(match api.get_opt(name).await {
            Ok(Some(pc)) => Fetched::Found(pc),
            Ok(None) => Fetched::NotFound,
            Err(e) => {
                let what =
                    Subject::object("PhoneConfiguration", "phoneconfigurations", name, namespace);
                Fetched::Unreadable(explain(client, &what, "get", e).await.0)
            }
        })
    };
    let neighbours = async {
        list_channels(client, Some(namespace))
            .await
            .map_err(|e| e.0)
    };
    let events = async {
        let api: Api<Event> = Api::namespaced(client.clone(), namespace);
        let uid = channel.metadata.uid.clone().unwrap_or_default();
        let params = ListParams::default().fields(&format!(
            "involvedObject.kind=DeploymentChannel,involvedObject.uid={uid}"
        ));
        match api.list(&params).await {
            Ok(list) => Ok(list.items),
            Err(e) => {
                let what = Subject::list("Event", "events", Some(namespace));
                Err(explain(client, &what, "list", e).await.0)
            }
        }
    };
    let (phone_configuration, neighbours, events) =
        futures::join!(phone_configuration, neighbours, events);
    Ok(ChannelInputs {
        channel,
        phone_configuration,
        neighbours,
        events,
    })
}

async fn list_channels(
    client: &Client,
    namespace: Option<&str>,
) -> Result<Vec<DeploymentChannel>, StatusError> {
    let api: Api<DeploymentChannel> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    match api.list(&ListParams::default()).await {
        Ok(list) => Ok(list.items),
        Err(e) => {
            let what = Subject::list("DeploymentChannel", "deploymentchannels", namespace);
            Err(explain(client, &what, "list", e).await)
        }
    }
}

async fn list_phone_configurations(
    client: &Client,
    namespace: Option<&str>,
) -> Result<Vec<PhoneConfiguration>, StatusError> {
    let api: Api<PhoneConfiguration> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    match api.list(&ListParams::default()).await {
        Ok(list) => Ok(list.items),
        Err(e) => {
            let what = Subject::list("PhoneConfiguration", "phoneconfigurations", namespace);
            Err(explain(client, &what, "list", e).await)
        }
    }
}

/// The palette for standard output: colours only on a terminal (and not
/// with NO_COLOR set), as `anstream` decides.
pub fn stdout_palette() -> Palette {
    match anstream::AutoStream::choice(&std::io::stdout()) {
        anstream::ColorChoice::Never => Palette::plain(),
        _ => Palette::colored(),
    }
}

/// Runs `status` on a fresh runtime and prints errors as one line; the exit
/// code is 0 when a report was printed, 1 otherwise.
pub fn main(args: &StatusArgs) -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let palette = stdout_palette();
    match runtime.block_on(run(args, &mut std::io::stdout().lock(), palette)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", printable::escape(&error.0));
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests;
