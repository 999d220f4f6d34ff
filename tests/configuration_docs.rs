//! docs/configuration.md against the binaries' own `--help`: every command
//! of `deploymentchannel-operator` has a section with a flags table, every
//! long flag that `--help` prints is in that table and every flag of the
//! table is in `--help`, with the same environment variable and the same
//! `[default: ...]`. The kubectl plugin's `status` takes exactly the flags
//! of `deploymentchannel-operator status`, as the page says.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    process::Command,
};

const OPERATOR: &str = env!("CARGO_BIN_EXE_deploymentchannel-operator");
const PLUGIN: &str = env!("CARGO_BIN_EXE_kubectl-interactions");
const PAGE: &str = "docs/configuration.md";

/// What `--help` or the page says about one long flag.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Flag {
    /// `[env: NAME=]`, or the page's environment variable column.
    env: Option<String>,
    /// `[default: VALUE]`; on the page, the default column as written.
    default: Option<String>,
}

/// `BINARY ARGS... --help`, which must succeed.
fn help(binary: &str, command: &[&str]) -> String {
    let out = Command::new(binary)
        .args(command)
        .arg("--help")
        .env_remove("NO_COLOR")
        .output()
        .unwrap_or_else(|e| panic!("{binary} cannot run: {e}"));
    assert!(
        out.status.success(),
        "{binary} {} --help failed: {}",
        command.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("help is UTF-8")
}

/// The lines of the help section that starts with `title` (`Commands:`).
fn section<'a>(help: &'a str, title: &str) -> Vec<&'a str> {
    help.lines()
        .skip_while(|l| l.trim_end() != title)
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .collect()
}

/// The subcommands a help text lists (`help` aside).
fn subcommands(help: &str) -> Vec<String> {
    section(help, "Commands:")
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// Whether a help line starts an option: `  -n, --namespace <NAMESPACE>`.
fn option_name(line: &str) -> Option<String> {
    let trimmed = line.trim_start();
    if line.len() - trimmed.len() < 2 {
        return None;
    }
    let rest = match trimmed.strip_prefix('-') {
        Some(r) if !r.starts_with('-') => r.split_once(", ")?.1,
        _ => trimmed,
    };
    let name = rest.strip_prefix("--")?;
    let name: String = name
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    (!name.is_empty()).then(|| format!("--{name}"))
}

/// `[key: value]` in `text`.
fn bracketed(text: &str, key: &str) -> Option<String> {
    let start = text.find(&format!("[{key}: "))? + key.len() + 3;
    let end = start + text[start..].find(']')?;
    Some(text[start..end].to_string())
}

/// The long flags of a help text (`--help` and `--version` aside).
fn help_flags(help: &str) -> BTreeMap<String, Flag> {
    let mut blocks: Vec<(String, String)> = Vec::new();
    let mut in_options = false;
    for line in help.lines() {
        if line.trim_end() == "Options:" {
            in_options = true;
            continue;
        }
        if !in_options {
            continue;
        }
        if let Some(name) = option_name(line) {
            blocks.push((name, line.to_string()));
        } else if let Some((_, text)) = blocks.last_mut() {
            text.push('\n');
            text.push_str(line);
        }
    }
    blocks
        .into_iter()
        .filter(|(name, _)| name != "--help" && name != "--version")
        .map(|(name, text)| {
            let env = bracketed(&text, "env").map(|e| e.split('=').next().unwrap().to_string());
            let default = bracketed(&text, "default");
            (name, Flag { env, default })
        })
        .collect()
}

/// Every command path of the operator binary (`["status", "channel"]`),
/// the top level included, with its flags.
fn operator_commands() -> BTreeMap<Vec<String>, BTreeMap<String, Flag>> {
    let mut commands = BTreeMap::new();
    let mut todo: Vec<Vec<String>> = vec![Vec::new()];
    while let Some(path) = todo.pop() {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        let text = help(OPERATOR, &args);
        for sub in subcommands(&text) {
            let mut next = path.clone();
            next.push(sub);
            todo.push(next);
        }
        commands.insert(path, help_flags(&text));
    }
    commands
}

/// The backticked spans of a line.
fn code_spans(line: &str) -> Vec<&str> {
    line.split('`').skip(1).step_by(2).collect()
}

/// The command a heading's code span names: `run`, `status channel`,
/// `deploymentchannel-operator validate` (placeholders such as `NAME` dropped).
fn command_of(span: &str) -> Vec<String> {
    span.split_whitespace()
        .filter(|w| *w != "deploymentchannel-operator")
        .take_while(|w| !w.chars().any(|c| c.is_ascii_uppercase()) && !w.starts_with('-'))
        .map(str::to_string)
        .collect()
}

/// One flags table of the page: the commands its section's heading names,
/// and its rows.
#[derive(Debug)]
struct Table {
    heading: String,
    commands: Vec<Vec<String>>,
    flags: BTreeMap<String, Flag>,
}

fn cells(row: &str) -> Vec<String> {
    let row = row.trim().trim_start_matches('|').trim_end_matches('|');
    row.split('|').map(|c| c.trim().to_string()).collect()
}

/// Every table of the page whose header has a `flag` column.
fn page_tables(page: &str) -> Vec<Table> {
    let mut tables = Vec::new();
    let mut heading = String::new();
    let lines: Vec<&str> = page.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.starts_with('#') {
            heading = line.to_string();
            i += 1;
            continue;
        }
        let header = cells(line);
        if !(line.trim_start().starts_with('|')
            && header.first().map(String::as_str) == Some("flag"))
        {
            i += 1;
            continue;
        }
        let column = |name: &str| header.iter().position(|h| h == name);
        let env_column = column("environment variable");
        let default_column = column("default").unwrap_or_else(|| {
            panic!("{PAGE}: the flags table under {heading:?} has no default column")
        });
        let mut flags = BTreeMap::new();
        i += 2; // the header and its |---| line
        while i < lines.len() && lines[i].trim_start().starts_with('|') {
            let row = cells(lines[i]);
            let name = code_spans(&row[0])
                .into_iter()
                .find_map(|s| s.split_whitespace().find(|w| w.starts_with("--")))
                .unwrap_or_else(|| panic!("{PAGE}: a row without a --flag: {}", lines[i]))
                .to_string();
            let env = env_column.and_then(|c| code_spans(&row[c]).first().map(|s| s.to_string()));
            let default = Some(row[default_column].clone());
            assert!(
                flags.insert(name.clone(), Flag { env, default }).is_none(),
                "{PAGE}: {name} twice under {heading:?}"
            );
            i += 1;
        }
        let commands = code_spans(&heading)
            .into_iter()
            .map(command_of)
            .filter(|c| !c.is_empty())
            .collect();
        tables.push(Table {
            heading: heading.clone(),
            commands,
            flags,
        });
    }
    tables
}

fn read_page() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(PAGE))
        .unwrap_or_else(|e| panic!("cannot read {PAGE}: {e}"))
}

/// Where the page and `--help` disagree about one command's flags.
fn differences(
    command: &str,
    help: &BTreeMap<String, Flag>,
    page: &BTreeMap<String, Flag>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, flag) in help {
        let Some(documented) = page.get(name) else {
            problems.push(format!("{command}: {name} is not documented"));
            continue;
        };
        if documented.env != flag.env {
            problems.push(format!(
                "{command}: {name}'s environment variable is {:?} in --help, {:?} on the page",
                flag.env, documented.env
            ));
        }
        let cell = documented.default.clone().unwrap_or_default();
        match &flag.default {
            Some(default) if !cell.starts_with(&format!("`{default}`")) => problems.push(format!(
                "{command}: {name}'s default is `{default}` in --help, {cell:?} on the page"
            )),
            None if cell.starts_with('`') => problems.push(format!(
                "{command}: {name} has no [default: ...] in --help, the page says {cell:?}"
            )),
            _ => {}
        }
    }
    for name in page.keys().filter(|n| !help.contains_key(*n)) {
        problems.push(format!(
            "{command}: the page documents {name}, which --help does not list"
        ));
    }
    problems
}

#[test]
fn help_lists_commands_and_flags() {
    // The parser itself, on the help text clap prints.
    let commands = operator_commands();
    let names: BTreeSet<String> = commands.keys().map(|c| c.join(" ")).collect();
    for expected in [
        "",
        "run",
        "dev",
        "validate",
        "status",
        "status channel",
        "crd",
    ] {
        assert!(names.contains(expected), "{expected:?} not in {names:?}");
    }
    let run = &commands[&vec!["run".to_string()]];
    assert_eq!(
        run["--probe-address"],
        Flag {
            env: Some("PROBE_ADDRESS".into()),
            default: Some("0.0.0.0:8081".into())
        }
    );
    assert_eq!(
        run["--namespace"],
        Flag {
            env: Some("WATCH_NAMESPACE".into()),
            default: None
        }
    );
    assert!(run.contains_key("--insecure-metrics"));
    assert!(!run.contains_key("--help"));
    let status = &commands[&vec!["status".to_string()]];
    assert_eq!(status["--output"].default.as_deref(), Some("text"));
    assert!(status.contains_key("--all-namespaces"));
    assert_eq!(
        commands[&vec!["crd".to_string()]]
            .keys()
            .collect::<Vec<_>>(),
        ["--dir"]
    );
}

#[test]
fn the_page_is_read_as_the_test_expects() {
    let tables = page_tables(
        "## `run` and `dev`\n\n| flag | environment variable | default | x |\n|---|---|---|---|\n\
         | `--a N` | `A` | `1` | one |\n| `--b` | `B` | off | two |\n\n\
         ## `status channel NAME`\n\n| flag | default | x |\n|---|---|---|\n| `-n`, `--namespace NS` | the context's | y |\n",
    );
    assert_eq!(tables.len(), 2);
    assert_eq!(
        tables[0].commands,
        [vec!["run".to_string()], vec!["dev".to_string()]]
    );
    assert_eq!(
        tables[0].flags["--a"],
        Flag {
            env: Some("A".into()),
            default: Some("`1`".into())
        }
    );
    assert_eq!(
        tables[1].commands,
        [vec!["status".to_string(), "channel".to_string()]]
    );
    assert_eq!(tables[1].flags["--namespace"].env, None);

    // A difference of each kind is found.
    let help = BTreeMap::from([
        (
            "--a".to_string(),
            Flag {
                env: Some("A".into()),
                default: Some("2".into()),
            },
        ),
        (
            "--c".to_string(),
            Flag {
                env: None,
                default: None,
            },
        ),
    ]);
    let problems = differences("run", &help, &tables[0].flags);
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(
        problems[0].contains("--a's default is `2`"),
        "{problems:#?}"
    );
    assert!(
        problems[1].contains("--c is not documented"),
        "{problems:#?}"
    );
    assert!(problems[2].contains("documents --b"), "{problems:#?}");
}

#[test]
fn every_flag_of_every_command_is_documented_with_its_default() {
    let page = read_page();
    let tables = page_tables(&page);
    let commands = operator_commands();
    let mut problems = Vec::new();
    for (command, flags) in &commands {
        let name = if command.is_empty() {
            "deploymentchannel-operator".to_string()
        } else {
            command.join(" ")
        };
        let documented: Vec<&Table> = tables
            .iter()
            .filter(|t| t.commands.contains(command))
            .collect();
        match documented.as_slice() {
            [] if command.is_empty() && flags.is_empty() => {}
            [] => problems.push(format!("{name}: no section with a flags table names it")),
            [table] => problems.extend(differences(&name, flags, &table.flags)),
            more => problems.push(format!(
                "{name}: {} sections name it: {:?}",
                more.len(),
                more.iter().map(|t| &t.heading).collect::<Vec<_>>()
            )),
        }
    }
    // No section documents a command that does not exist.
    for table in &tables {
        for command in &table.commands {
            if !commands.contains_key(command) {
                problems.push(format!(
                    "{:?} documents `{}`, which the binary does not have",
                    table.heading,
                    command.join(" ")
                ));
            }
        }
        assert!(
            !table.commands.is_empty(),
            "{PAGE}: the flags table under {:?} names no command in its heading",
            table.heading
        );
    }
    assert!(
        problems.is_empty(),
        "{PAGE} and --help disagree:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_plugin_takes_the_flags_of_status() {
    let operator = operator_commands();
    for sub in [&[][..], &["channel"][..], &["phoneconfiguration"][..]] {
        let mut path = vec!["status"];
        path.extend(sub);
        let plugin = help_flags(&help(PLUGIN, &path));
        let key: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            plugin,
            operator[&key],
            "kubectl interactions {} and deploymentchannel-operator {} differ",
            path.join(" "),
            path.join(" ")
        );
    }
}
