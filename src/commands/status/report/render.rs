//! The tree-shaped text view of the reports, for people. Colour is a
//! [`Palette`] chosen by the caller: plain when the output is not a terminal.

use anstyle::{AnsiColor, Style};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{
    ChannelReport, ConditionView, Counts, Lookup, PhoneConfigurationReport, ReadyConditionView,
    Summary,
};

/// Styles for the parts of the text that carry meaning.
#[derive(Clone, Copy, Debug)]
pub struct Palette {
    good: Style,
    bad: Style,
    unknown: Style,
    strong: Style,
}

impl Palette {
    /// No escape codes at all.
    pub fn plain() -> Self {
        Self {
            good: Style::new(),
            bad: Style::new(),
            unknown: Style::new(),
            strong: Style::new(),
        }
    }

    /// ANSI colours, for a terminal.
    pub fn colored() -> Self {
        Self {
            good: AnsiColor::Green.on_default(),
            bad: AnsiColor::Red.on_default(),
            unknown: AnsiColor::Yellow.on_default(),
            strong: Style::new().bold(),
        }
    }

    fn paint(style: Style, text: &str) -> String {
        format!("{}{text}{}", style.render(), style.render_reset())
    }

    /// A condition status, coloured by what it means.
    fn status(&self, status: &str) -> String {
        let style = match status {
            "True" => self.good,
            "False" => self.bad,
            _ => self.unknown,
        };
        Self::paint(style, status)
    }
}

/// A node of the tree: its lines (the first one next to the branch) and children.
struct Node {
    lines: Vec<String>,
    children: Vec<Node>,
}

impl Node {
    fn new(line: impl Into<String>) -> Self {
        Self {
            lines: vec![line.into()],
            children: Vec::new(),
        }
    }

    fn with_lines(lines: Vec<String>) -> Self {
        Self {
            lines,
            children: Vec::new(),
        }
    }

    fn child(mut self, node: Node) -> Self {
        self.children.push(node);
        self
    }

    fn children(mut self, nodes: impl IntoIterator<Item = Node>) -> Self {
        self.children.extend(nodes);
        self
    }

    fn render(&self) -> String {
        let mut out = String::new();
        for line in &self.lines {
            out.push_str(line);
            out.push('\n');
        }
        render_children(&self.children, "", &mut out);
        out
    }
}

fn render_children(children: &[Node], prefix: &str, out: &mut String) {
    for (i, child) in children.iter().enumerate() {
        let last = i + 1 == children.len();
        let (branch, rest) = if last {
            ("└─ ", "   ")
        } else {
            ("├─ ", "│  ")
        };
        for (j, line) in child.lines.iter().enumerate() {
            let lead = if j == 0 { branch } else { rest };
            let text = format!("{prefix}{lead}{line}");
            out.push_str(text.trim_end());
            out.push('\n');
        }
        render_children(&child.children, &format!("{prefix}{rest}"), out);
    }
}

/// Pads every cell but the last of each row to its column's width; `paint`
/// styles a cell after padding, so escape codes do not upset the widths.
fn table(rows: &[Vec<String>], paint: impl Fn(usize, &str) -> String) -> Vec<String> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|row| {
            row.iter()
                .enumerate()
                .map(|(c, cell)| {
                    let padding = if c + 1 == row.len() {
                        0
                    } else {
                        widths[c] - cell.chars().count()
                    };
                    format!("{}{}", paint(c, cell), " ".repeat(padding))
                })
                .collect::<Vec<_>>()
                .join("  ")
        })
        .collect()
}

/// How long ago `then` was, as kubectl prints ages (`45s`, `5m30s`, `3h`, `2d`).
pub fn age(then: &Time, now: &Time) -> String {
    let seconds = now.0.as_second() - then.0.as_second();
    if seconds < 0 {
        return "0s".into();
    }
    let minutes = seconds / 60;
    let hours = minutes / 60;
    let days = hours / 24;
    let years = days / 365;
    let with = |big: i64, unit: &str, small: i64, small_unit: &str| {
        if small == 0 {
            format!("{big}{unit}")
        } else {
            format!("{big}{unit}{small}{small_unit}")
        }
    };
    if seconds < 120 {
        format!("{seconds}s")
    } else if minutes < 10 {
        with(minutes, "m", seconds % 60, "s")
    } else if minutes < 180 {
        format!("{minutes}m")
    } else if hours < 8 {
        with(hours, "h", minutes % 60, "m")
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        with(days, "d", hours % 24, "h")
    } else if days < 365 * 2 {
        format!("{days}d")
    } else if days < 365 * 8 {
        with(years, "y", days % 365, "d")
    } else {
        format!("{years}y")
    }
}

fn age_of(then: Option<&Time>, now: &Time) -> String {
    then.map_or_else(|| "-".into(), |t| age(t, now))
}

/// `True (Ready) for 3m`, and the message on the next line.
fn readiness_lines(ready: &ReadyConditionView, now: &Time, palette: &Palette) -> Vec<String> {
    let mut first = palette.status(&ready.status);
    if let Some(reason) = &ready.reason {
        first.push_str(&format!(" ({reason})"));
    }
    if let Some(since) = &ready.since {
        first.push_str(&format!(" for {}", age(since, now)));
    }
    if ready.reason.is_some() && !ready.current {
        first.push_str(", for an older generation");
    }
    let mut lines = vec![first];
    if let Some(message) = ready.message.as_deref().filter(|m| !m.is_empty()) {
        lines.push(message.to_string());
    }
    lines
}

/// Label/value rows, aligned; a value may span several lines.
fn fields(rows: Vec<(&str, Vec<String>)>) -> Vec<Node> {
    let width = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    rows.into_iter()
        .map(|(label, values)| {
            let lines = values
                .into_iter()
                .enumerate()
                .map(|(i, v)| {
                    let lead = if i == 0 {
                        format!("{label:width$}")
                    } else {
                        " ".repeat(width)
                    };
                    format!("{lead}  {v}")
                })
                .collect();
            Node::with_lines(lines)
        })
        .collect()
}

fn conditions_node(
    conditions: &[ConditionView],
    shown_message: Option<&str>,
    now: &Time,
    palette: &Palette,
) -> Node {
    if conditions.is_empty() {
        return Node::new("Conditions  none yet");
    }
    let rows: Vec<Vec<String>> = conditions
        .iter()
        .map(|c| {
            vec![
                c.type_.clone(),
                c.status.clone(),
                c.reason.clone(),
                age(&c.last_transition_time, now),
            ]
        })
        .collect();
    let lines = table(&rows, |column, cell| {
        if column == 1 {
            palette.status(cell)
        } else {
            cell.to_string()
        }
    });
    Node::new("Conditions").children(conditions.iter().zip(lines).map(|(c, line)| {
        let mut lines = vec![line];
        if !c.message.is_empty() && Some(c.message.as_str()) != shown_message {
            lines.push(c.message.clone());
        }
        Node::with_lines(lines)
    }))
}

fn unreadable_node(unreadable: &[String], palette: &Palette) -> Option<Node> {
    (!unreadable.is_empty()).then(|| {
        Node::new(Palette::paint(palette.unknown, "Not readable"))
            .children(unreadable.iter().map(Node::new))
    })
}

fn next_step_node(next_step: &str, palette: &Palette) -> Node {
    Node::new(format!(
        "{} {next_step}",
        Palette::paint(palette.strong, "Next step:")
    ))
}

/// The text view of a channel report.
pub fn channel(report: &ChannelReport, now: &Time, palette: &Palette) -> String {
    let mut root = Node::new(Palette::paint(
        palette.strong,
        &format!("DeploymentChannel {}/{}", report.namespace, report.name),
    ))
    .children(fields(vec![
        ("Type", vec![report.deployment_type.to_string()]),
        ("Identifier", vec![report.identifier.clone()]),
        ("Ready", readiness_lines(&report.ready, now, palette)),
    ]))
    .child(conditions_node(
        &report.conditions,
        report.ready.message.as_deref(),
        now,
        palette,
    ));
    if let Some(pc) = &report.phone_configuration {
        let node = Node::new(format!("PhoneConfiguration {}", pc.name));
        root = root.child(match pc.lookup {
            Lookup::Found => node.children(fields(vec![
                ("Number", vec![pc.phone_number.clone().unwrap_or_default()]),
                ("Provider", vec![pc.provider.clone().unwrap_or_default()]),
                ("Capabilities", vec![pc.capabilities.join(", ")]),
                (
                    "Ready",
                    pc.ready
                        .as_ref()
                        .map(|r| readiness_lines(r, now, palette))
                        .unwrap_or_default(),
                ),
            ])),
            Lookup::NotFound => node.child(Node::new(Palette::paint(
                palette.bad,
                &format!("not found in namespace {}", report.namespace),
            ))),
            Lookup::Unreadable => node.child(Node::new(Palette::paint(
                palette.unknown,
                "not readable (see below)",
            ))),
        });
    }
    if let Some(conflict) = &report.conflict {
        let by = match (&conflict.holder, conflict.held_in_another_namespace) {
            (Some(holder), _) => format!("DeploymentChannel {} in this namespace", holder.name),
            (None, true) => "a DeploymentChannel in another namespace".to_string(),
            (None, false) => "another DeploymentChannel (not readable)".to_string(),
        };
        root = root.child(Node::new(format!(
            "Conflict  {} {} is held by {by}",
            report.deployment_type, conflict.identifier
        )));
    }
    if !report.waiting.is_empty() {
        let names: Vec<&str> = report.waiting.iter().map(|w| &*w.name).collect();
        root = root.child(Node::new(format!(
            "Waiting for its identifier  {}",
            names.join(", ")
        )));
    }
    root = root.child(if report.events.is_empty() {
        Node::new("Events  none")
    } else {
        let rows: Vec<Vec<String>> = report
            .events
            .iter()
            .map(|e| {
                let count = if e.count > 1 {
                    format!(" (x{})", e.count)
                } else {
                    String::new()
                };
                vec![
                    age_of(e.last_seen.as_ref(), now),
                    e.type_.clone(),
                    e.reason.clone(),
                    format!("{}{count}", e.message),
                ]
            })
            .collect();
        Node::new("Events").children(
            table(&rows, |_, c| c.to_string())
                .into_iter()
                .map(Node::new),
        )
    });
    if let Some(node) = unreadable_node(&report.unreadable, palette) {
        root = root.child(node);
    }
    root.child(next_step_node(&report.next_step, palette))
        .render()
}

/// The text view of a PhoneConfiguration report.
pub fn phone_configuration(
    report: &PhoneConfigurationReport,
    now: &Time,
    palette: &Palette,
) -> String {
    let bound = if report.bound_channels.is_empty() {
        Node::new("Bound channels  none")
    } else {
        let rows: Vec<Vec<String>> = report
            .bound_channels
            .iter()
            .map(|c| {
                vec![
                    c.name.clone(),
                    c.deployment_type.to_string(),
                    c.identifier.clone(),
                    c.ready.status.clone(),
                    c.ready.reason.clone().unwrap_or_default(),
                ]
            })
            .collect();
        let lines = table(&rows, |column, cell| {
            if column == 3 {
                palette.status(cell)
            } else {
                cell.to_string()
            }
        });
        Node::new(format!("Bound channels ({})", report.bound_channels.len())).children(
            report.bound_channels.iter().zip(lines).map(|(c, line)| {
                let mut lines = vec![line];
                if let Some(message) = c.ready.message.as_deref().filter(|_| !c.ready.is_ready()) {
                    lines.push(message.to_string());
                }
                Node::with_lines(lines)
            }),
        )
    };
    let mut root = Node::new(Palette::paint(
        palette.strong,
        &format!("PhoneConfiguration {}/{}", report.namespace, report.name),
    ))
    .children(fields(vec![
        ("Number", vec![report.phone_number.clone()]),
        ("Provider", vec![report.provider.clone()]),
        ("Capabilities", vec![report.capabilities.join(", ")]),
        ("Ready", readiness_lines(&report.ready, now, palette)),
    ]))
    .child(conditions_node(
        &report.conditions,
        report.ready.message.as_deref(),
        now,
        palette,
    ))
    .child(bound);
    if let Some(node) = unreadable_node(&report.unreadable, palette) {
        root = root.child(node);
    }
    root.child(next_step_node(&report.next_step, palette))
        .render()
}

fn counts_text(counts: &Counts, palette: &Palette) -> String {
    let mut parts = vec![
        Palette::paint(palette.good, &format!("{} ready", counts.ready)),
        Palette::paint(
            if counts.not_ready > 0 {
                palette.bad
            } else {
                Style::new()
            },
            &format!("{} not ready", counts.not_ready),
        ),
    ];
    if counts.pending > 0 {
        parts.push(Palette::paint(
            palette.unknown,
            &format!("{} pending", counts.pending),
        ));
    }
    parts.join(", ")
}

/// The text view of a summary.
pub fn summary(report: &Summary, now: &Time, palette: &Palette) -> String {
    let scope = match &report.namespace {
        Some(ns) => format!("Namespace {ns}"),
        None => "All namespaces".to_string(),
    };
    let mut root = Node::new(format!(
        "{}: {} channels, {}",
        Palette::paint(palette.strong, &scope),
        report.channels.total,
        counts_text(&report.channels, palette)
    ));
    let types: Vec<_> = report
        .by_type
        .iter()
        .filter(|t| t.counts.total > 0)
        .collect();
    if !types.is_empty() {
        let width = types
            .iter()
            .map(|t| t.deployment_type.as_str().len())
            .max()
            .unwrap_or(0);
        let total_width = types
            .iter()
            .map(|t| t.counts.total.to_string().len())
            .max()
            .unwrap_or(0);
        root = root.child(Node::new("By type").children(types.iter().map(|t| {
            Node::new(format!(
                "{:width$}  {:>total_width$}  {}",
                t.deployment_type.as_str(),
                t.counts.total,
                counts_text(&t.counts, palette)
            ))
        })));
    }
    if !report.not_ready.is_empty() {
        root = root.child(
            Node::new("Not ready, by reason").children(report.not_ready.iter().map(|group| {
                let rows: Vec<Vec<String>> = group
                    .channels
                    .iter()
                    .map(|c| {
                        let name = if report.namespace.is_some() {
                            c.name.clone()
                        } else {
                            format!("{}/{}", c.namespace, c.name)
                        };
                        vec![
                            name,
                            c.deployment_type.to_string(),
                            format!("for {}", age_of(c.since.as_ref(), now)),
                            c.message.clone(),
                        ]
                    })
                    .collect();
                let reason = if group.reason.is_empty() {
                    "(no reason)"
                } else {
                    &group.reason
                };
                Node::new(format!(
                    "{} ({})",
                    Palette::paint(palette.bad, reason),
                    group.channels.len()
                ))
                .children(
                    table(&rows, |_, c| c.to_string())
                        .into_iter()
                        .map(Node::new),
                )
            })),
        );
    }
    root = root.child(match &report.phone_configurations {
        Some(counts) => Node::new(format!(
            "PhoneConfigurations: {}, {}",
            counts.total,
            counts_text(counts, palette)
        )),
        None => Node::new(format!(
            "PhoneConfigurations: {}",
            Palette::paint(palette.unknown, "not readable (see below)")
        )),
    });
    if let Some(node) = unreadable_node(&report.unreadable, palette) {
        root = root.child(node);
    }
    root.render()
}
