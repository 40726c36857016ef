//! Settings from three places besides the defaults: the command line, the
//! environment (`CHATCHAIN_` and the flag's name in capitals, `-` as `_`:
//! `CHATCHAIN_DATA_DIR`; `NODE_LOG` still works for `--log`), and a TOML
//! file, `--config FILE`, or else `chatchain.toml` in the data directory
//! when there is one. A flag beats the environment, which beats the file,
//! which beats the default; the client subcommands find their node by the
//! same rules. The file's keys are the flags' long names (`data-dir =
//! "/srv/chat"`, `port = 51511`, `peer = ["192.0.2.7", "chat.example.org"]`);
//! a key that is none, or a value the flag would refuse, is refused with
//! the file's path, the line and the key.
//!
//! The layering: the command line is parsed once (clap applies the
//! environment and the defaults), each setting clap took from a default
//! is given the file's value if it has one, and the command line with
//! those values put in front is parsed again, so that every value goes
//! through its flag's own parser.

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory};

use crate::cli::Cli;

/// The configuration file's name in a data directory.
pub const CONFIG_FILE: &str = "chatchain.toml";

/// One effective setting, as `node config` prints it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Setting {
    /// The flag's long name (the file's key).
    pub name: String,
    /// Its values, joined with commas; empty for none.
    pub value: String,
    /// Where it came from: `flag`, `env NAME`, `file PATH:LINE`,
    /// `default`.
    pub source: String,
}

/// The file's settings: each key's values and line.
struct FileValues {
    path: PathBuf,
    entries: Vec<(String, Vec<String>, usize)>,
}

/// The path of the file to read: `--config` (or `CHATCHAIN_CONFIG`), which
/// must exist, or the data directory's, if there.
fn file_path(first: &ArgMatches) -> Option<(PathBuf, bool)> {
    if let Some(path) = first.get_one::<PathBuf>("config") {
        return Some((path.clone(), true));
    }
    let dir = match first.get_one::<PathBuf>("data_dir") {
        Some(dir) => dir.clone(),
        None => {
            let bind = first
                .get_one::<Ipv4Addr>("bind")
                .copied()
                .unwrap_or(Ipv4Addr::UNSPECIFIED);
            crate::default_data_dir(bind).ok()?
        }
    };
    Some((dir.join(CONFIG_FILE), false))
}

/// The 1-based line of byte `at` of `text`.
fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

/// Reads the TOML file at `path`.
///
/// # Errors
/// It cannot be read or parsed, or a value is neither a string, a number,
/// nor an array of them: with the path, the line and the key.
fn read(path: &Path) -> Result<FileValues, String> {
    let text = fs::read_to_string(path)
        .map_err(|e| format!("cannot read the configuration file {}: {e}", path.display()))?;
    let at = |line: usize, key: &str, why: &str| {
        format!(
            "configuration file {}, line {line}, key '{key}': {why}",
            path.display()
        )
    };
    let table = toml::de::DeTable::parse(&text).map_err(|e| {
        let line = e.span().map_or(1, |span| line_of(&text, span.start));
        format!(
            "configuration file {}, line {line}: not TOML: {}",
            path.display(),
            e.message()
        )
    })?;
    let mut entries = Vec::new();
    for (key, value) in table.get_ref() {
        let line = line_of(&text, key.span().start);
        let scalar = |value: &toml::de::DeValue| match value {
            toml::de::DeValue::String(s) => Some(s.to_string()),
            toml::de::DeValue::Integer(i) => Some(i.to_string()),
            toml::de::DeValue::Float(f) => Some(f.to_string()),
            toml::de::DeValue::Boolean(b) => Some(b.to_string()),
            _ => None,
        };
        let values = match value.get_ref() {
            toml::de::DeValue::Array(items) => items.iter().map(|v| scalar(v.get_ref())).collect(),
            value => scalar(value).map(|v| vec![v]),
        }
        .ok_or_else(|| {
            at(
                line,
                key.get_ref(),
                "a value is a string, a number or true/false (or an array of them, for peer)",
            )
        })?;
        entries.push((key.get_ref().to_string(), values, line));
    }
    Ok(FileValues {
        path: path.to_path_buf(),
        entries,
    })
}

/// The command line `args` with the file's settings put in front of the
/// node's flags (where no flag or environment variable set them), and
/// every setting's source.
///
/// # Errors
/// The file cannot be read, or a key or value in it is refused: with the
/// path, the line and the key.
pub fn layer(
    first: &ArgMatches,
    args: &[OsString],
) -> Result<(Vec<OsString>, Vec<Setting>), String> {
    let file = match file_path(first) {
        Some((path, true)) => Some(read(&path)?),
        Some((path, false)) if path.is_file() => Some(read(&path)?),
        _ => None,
    };
    let command = Cli::command();
    let mut added: Vec<OsString> = Vec::new();
    let mut from_file = Vec::new();
    if let Some(file) = &file {
        for (key, values, line) in &file.entries {
            let refuse = |why: String| {
                format!(
                    "configuration file {}, line {line}, key '{key}': {why}",
                    file.path.display()
                )
            };
            let arg = command
                .get_arguments()
                .find(|a| {
                    a.get_long() == Some(key.as_str())
                        && key != "config"
                        && key != "help"
                        && key != "version"
                })
                .ok_or_else(|| {
                    refuse(
                        "no such setting (the keys are the node's flags, such as data-dir or port)"
                            .into(),
                    )
                })?;
            let id = arg.get_id().as_str();
            // A switch (--no-relay, --no-http) takes true or false.
            let switch = !arg.get_action().takes_values();
            let mut flags = Vec::new();
            for value in values {
                let flag = match (switch, value.as_str()) {
                    (false, _) => vec![OsString::from(format!("--{key}")), OsString::from(value)],
                    (true, "true") => vec![OsString::from(format!("--{key}"))],
                    (true, "false") => continue,
                    (true, _) => {
                        return Err(refuse(format!("'{value}': a switch takes true or false")));
                    }
                };
                // Checked alone by the flag's own parser, even when a flag
                // or the environment overrides it: the file is refused
                // whole or taken whole.
                Cli::command()
                    .try_get_matches_from([OsString::from("node")].iter().chain(&flag))
                    .map_err(|e| refuse(first_line(&e.to_string())))?;
                flags.extend(flag);
            }
            if matches!(
                first.value_source(id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            ) {
                continue;
            }
            added.extend(flags);
            from_file.push((
                id.to_string(),
                format!("file {}:{line}", file.path.display()),
            ));
        }
    }
    let mut layered = vec![args.first().cloned().unwrap_or_else(|| "node".into())];
    layered.extend(added);
    layered.extend(args.iter().skip(1).cloned());
    let settings = command
        .get_arguments()
        .filter(|a| a.get_long().is_some_and(|l| l != "help" && l != "version"))
        .map(|arg| {
            let id = arg.get_id().as_str();
            let source = match first.value_source(id) {
                Some(ValueSource::CommandLine) => "flag".to_string(),
                Some(ValueSource::EnvVariable)
                    if id == "log" && std::env::var_os("CHATCHAIN_LOG").is_none() =>
                {
                    "env NODE_LOG".to_string()
                }
                Some(ValueSource::EnvVariable) => {
                    format!(
                        "env {}",
                        arg.get_env()
                            .map_or(String::new(), |e| e.to_string_lossy().into_owned())
                    )
                }
                _ => from_file
                    .iter()
                    .find(|(i, _)| i == id)
                    .map_or("default".to_string(), |(_, s)| s.clone()),
            };
            Setting {
                name: arg.get_long().unwrap_or_default().to_string(),
                value: String::new(),
                source,
            }
        })
        .collect();
    Ok((layered, settings))
}

/// The first line of a clap error, without its `error: ` prefix.
fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

/// Fills each setting's value from the final parse, `matches`.
pub fn fill_values(settings: &mut [Setting], matches: &ArgMatches) {
    let command = Cli::command();
    for setting in settings {
        let Some(arg) = command
            .get_arguments()
            .find(|a| a.get_long() == Some(setting.name.as_str()))
        else {
            continue;
        };
        if let Ok(Some(raw)) = matches.try_get_raw(arg.get_id().as_str()) {
            setting.value = raw
                .map(|v| v.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(",");
        }
    }
}

/// `node config`: each setting, its value, and where it came from.
pub fn print(settings: &[Setting], json: bool) {
    let mut out = std::io::stdout().lock();
    if json {
        let document = serde_json::json!({"reply": "config", "settings": settings});
        let _ = writeln!(out, "{document}");
        return;
    }
    for s in settings {
        let value = if s.value.is_empty() {
            "(none)"
        } else {
            &s.value
        };
        let _ = writeln!(out, "{:<16} {:<28} {}", s.name, value, s.source);
    }
}
