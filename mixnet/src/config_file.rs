//! `config.toml` for `nym-directory`, `nym-mixnode` and `nym-gateway`, and
//! their `init` subcommand, written once over clap for all three: every flag
//! a binary has is a key of its config file, with no code per flag.
//!
//! - `BIN init [flags]` creates the data dir (0700) and the node's key (the
//!   same loaders as a first start), writes `<data-dir>/config.toml` (0600):
//!   every flag, with the value given or its default, under its help text;
//!   a flag with neither is written commented out. It prints `config: PATH`
//!   and the key (`identity key: B58` or `directory key: B58`), and exits.
//! - `BIN [flags]` reads `--config FILE`, or else `<data-dir>/config.toml` when
//!   it exists, and uses its value for every flag not given on the command
//!   line (flags override the file). Without a file nothing changes.
//!
//! Keys are the long flag names without the leading `--`, as `--help` spells
//! them (kebab-case: `mix-listen`, `announce-interval`). Values are typed:
//! integers, floats (an integer is accepted), `true`/`false` for switches and
//! strings for the rest; a repeatable flag takes an array. A relative path in
//! the file is relative to the file's directory. A bad file (not TOML, an
//! unknown key, a wrong type or value) is an error naming the file and key.
//!
//! How: argv is parsed once ignoring errors (a required flag, or one another
//! flag requires, may come from the file), to learn which flags the command line
//! gave ([`ArgMatches::value_source`]) and where the data dir is;
//! then parsed again, for real, with `--key=value` appended for each key of
//! the file the command line did not give.

use crate::keyfiles;
use anyhow::{anyhow, bail, Context, Result};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command, CommandFactory, FromArgMatches};
use std::any::TypeId;
use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The file `init` writes in the data dir, and that a start reads from there.
pub const CONFIG_FILE: &str = "config.toml";
const CONFIG_ID: &str = "config";
const FORCE_ID: &str = "force";
const DATA_DIR_KEY: &str = "data-dir";

/// Which key `init` makes, and prints, for a binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKey {
    /// A mixnode's or gateway's ed25519 identity (`identity_private.pem`).
    Identity,
    /// The directory's ed25519 key (`directory_private.pem`).
    Directory,
}

/// What this module needs to know about a binary beyond its clap flags.
#[derive(Debug, Clone, Copy)]
pub struct Binary {
    pub name: &'static str,
    pub key: NodeKey,
    /// The data dir when `--data-dir` has neither a value nor a clap default.
    pub default_data_dir: Option<fn() -> PathBuf>,
}

pub const DIRECTORY: Binary = Binary {
    name: "nym-directory",
    key: NodeKey::Directory,
    default_data_dir: Some(crate::directory::DirectoryConfig::default_data_dir),
};
pub const MIXNODE: Binary = Binary {
    name: "nym-mixnode",
    key: NodeKey::Identity,
    default_data_dir: None,
};
pub const GATEWAY: Binary = Binary {
    name: "nym-gateway",
    key: NodeKey::Identity,
    default_data_dir: None,
};

/// The binary's flags from the command line and its config file; `None` when
/// the command was `init` (done, and printed: the binary exits).
/// `--help`, `--version` and command-line errors exit as `A::parse()` does.
pub fn parse<A: CommandFactory + FromArgMatches>(bin: &Binary) -> Result<Option<A>> {
    parse_from::<A, _, _>(bin, std::env::args_os())
}

/// [`parse`] over the given argv (its first item is the program).
pub fn parse_from<A, I, T>(bin: &Binary, argv: I) -> Result<Option<A>>
where
    A: CommandFactory + FromArgMatches,
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let argv: Vec<OsString> = argv.into_iter().map(Into::into).collect();
    let mut cmd = command::<A>(bin);
    let first = match relaxed(&cmd).try_get_matches_from(&argv) {
        Ok(m) => m,
        // help, version or a real error: the real parse says it and exits
        Err(_) => cmd.clone().get_matches_from(&argv),
    };
    if first.subcommand_name() == Some("init") {
        let m = cmd.clone().get_matches_from(&argv);
        let init = m
            .subcommand_matches("init")
            .ok_or_else(|| anyhow!("init: no arguments"))?;
        run_init(bin, &mut cmd, init)?;
        return Ok(None);
    }
    let path = match first.get_one::<PathBuf>(CONFIG_ID) {
        Some(path) => Some(path.clone()),
        // no data dir known: argv is wrong, and the real parse below says how
        None => data_dir(bin, &first)
            .ok()
            .map(|d| d.join(CONFIG_FILE))
            .filter(|p| p.exists()),
    };
    let mut full = argv.clone();
    if let Some(path) = &path {
        cmd.build();
        full.extend(file_args(&cmd, path, &first)?);
        eprintln!("{}: using {}", bin.name, path.display());
    }
    let m = cmd
        .clone()
        .try_get_matches_from(&full)
        .unwrap_or_else(|e| e.format(&mut cmd).exit());
    Ok(Some(
        A::from_arg_matches(&m).unwrap_or_else(|e| e.format(&mut cmd).exit()),
    ))
}

/// The binary's command, plus `--config FILE` and the `init` subcommand (the
/// same flags, and `--force`).
fn command<A: CommandFactory>(bin: &Binary) -> Command {
    let config = Arg::new(CONFIG_ID)
        .long(CONFIG_ID)
        .value_name("FILE")
        .value_parser(clap::value_parser!(PathBuf))
        .help(format!(
            "Read flags not given on the command line from FILE (TOML; default: <data-dir>/{CONFIG_FILE} when it exists)"
        ));
    let base = A::command().bin_name(bin.name);
    let init = base
        .clone()
        .name("init")
        .bin_name(format!("{} init", bin.name))
        .about(format!(
            "Create the data dir and the node's key, write every flag below (given or default) to \
             <data-dir>/{CONFIG_FILE} with its help as comments, print the path and the key, and exit"
        ))
        .arg(
            config
                .clone()
                .help("Write the config here instead of <data-dir>/config.toml"),
        )
        .arg(
            Arg::new(FORCE_ID)
                .long(FORCE_ID)
                .action(ArgAction::SetTrue)
                .help("Replace an existing config file"),
        );
    base.arg(config)
        .subcommand(init)
        .subcommand_negates_reqs(true)
        .args_conflicts_with_subcommands(true)
        .disable_help_subcommand(true)
}

/// `cmd` parsing whatever it can, with no check of required flags, `requires`
/// or conflicts (the file may complete them) and no help/version flags: a
/// parse that only learns what the command line gave.
fn relaxed(cmd: &Command) -> Command {
    cmd.clone()
        .ignore_errors(true)
        .disable_help_flag(true)
        .disable_version_flag(true)
}

/// The flags a config file can hold (not help, version, or --config).
fn flags(cmd: &Command) -> impl Iterator<Item = (&Arg, &str)> {
    cmd.get_arguments().filter_map(|a| {
        let long = a.get_long()?;
        let skip = matches!(
            a.get_action(),
            ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
        ) || a.get_id() == CONFIG_ID;
        (!skip).then_some((a, long))
    })
}

fn data_dir(bin: &Binary, m: &ArgMatches) -> Result<PathBuf> {
    let id = m
        .ids()
        .find(|id| id.as_str() == "data_dir" || id.as_str() == DATA_DIR_KEY);
    let given = id
        .and_then(|id| m.get_raw(id.as_str()))
        .and_then(|mut v| v.next())
        .map(PathBuf::from);
    given
        .or_else(|| bin.default_data_dir.map(|f| f()))
        .ok_or_else(|| anyhow!("{}: no --data-dir", bin.name))
}

/// What TOML type a flag's value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A switch (no value): `true`/`false`.
    Switch,
    /// Counted (`-vvv`): an integer.
    Count,
    Integer,
    Float,
    Bool,
    Path,
    String,
}

impl Kind {
    fn of(arg: &Arg) -> Kind {
        match arg.get_action() {
            ArgAction::SetTrue | ArgAction::SetFalse => return Kind::Switch,
            ArgAction::Count => return Kind::Count,
            _ => {}
        }
        let t = arg.get_value_parser().type_id();
        let is = |ids: &[TypeId]| ids.iter().any(|id| t == *id);
        if is(&[
            TypeId::of::<u8>(),
            TypeId::of::<u16>(),
            TypeId::of::<u32>(),
            TypeId::of::<u64>(),
            TypeId::of::<usize>(),
            TypeId::of::<i8>(),
            TypeId::of::<i16>(),
            TypeId::of::<i32>(),
            TypeId::of::<i64>(),
            TypeId::of::<isize>(),
        ]) {
            Kind::Integer
        } else if is(&[TypeId::of::<f32>(), TypeId::of::<f64>()]) {
            Kind::Float
        } else if is(&[TypeId::of::<bool>()]) {
            Kind::Bool
        } else if is(&[TypeId::of::<PathBuf>()]) {
            Kind::Path
        } else {
            Kind::String
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Kind::Switch | Kind::Bool => "true or false",
            Kind::Count | Kind::Integer => "an integer",
            Kind::Float => "a number",
            Kind::Path | Kind::String => "a string",
        }
    }

    /// A TOML value as the flag's command-line text.
    fn text(self, v: &toml::Value, base: &Path) -> Option<String> {
        match (self, v) {
            (Kind::Integer, toml::Value::Integer(i)) => Some(i.to_string()),
            (Kind::Float, toml::Value::Integer(i)) => Some(i.to_string()),
            (Kind::Float, toml::Value::Float(f)) => Some(f.to_string()),
            (Kind::Bool, toml::Value::Boolean(b)) => Some(b.to_string()),
            (Kind::String, toml::Value::String(s)) => Some(s.clone()),
            (Kind::Path, toml::Value::String(s)) => Some(base.join(s).display().to_string()),
            _ => None,
        }
    }

    /// A flag's command-line text as a TOML value.
    fn value(self, raw: &str) -> toml::Value {
        let parsed = match self {
            Kind::Integer | Kind::Count => raw.parse().ok().map(toml::Value::Integer),
            Kind::Float => raw.parse().ok().map(toml::Value::Float),
            Kind::Bool | Kind::Switch => raw.parse().ok().map(toml::Value::Boolean),
            Kind::Path => std::path::absolute(raw)
                .ok()
                .map(|p| toml::Value::String(p.display().to_string())),
            Kind::String => None,
        };
        parsed.unwrap_or_else(|| toml::Value::String(raw.to_string()))
    }
}

/// The file's values, as `--key=value` arguments, for the flags `given`
/// (the command line's matches) does not have.
fn file_args(cmd: &Command, path: &Path, given: &ArgMatches) -> Result<Vec<OsString>> {
    let text = fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| anyhow!("config file {} is not valid TOML: {e}", path.display()))?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let on_command_line = |id: &str| {
        matches!(
            given.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    };
    let mut out = Vec::new();
    for (key, value) in &table {
        let err = |what: String| anyhow!("config file {}: key `{key}`: {what}", path.display());
        let Some((arg, long)) = flags(cmd).find(|(_, long)| long == key) else {
            let hint = flags(cmd)
                .find(|(_, long)| *long == key.replace('_', "-"))
                .map(|(_, long)| format!(" (keys are the flags' long names: `{long}`)"))
                .unwrap_or_default();
            return Err(err(format!("unknown key{hint}")));
        };
        let id = arg.get_id().as_str();
        // the command line wins, also over a file value it conflicts with
        let conflicts = |a: &Arg, b: &Arg| cmd.get_arg_conflicts_with(a).iter().any(|c| c.get_id() == b.get_id());
        if on_command_line(id)
            || flags(cmd).any(|(other, _)| {
                on_command_line(other.get_id().as_str()) && (conflicts(arg, other) || conflicts(other, arg))
            })
        {
            continue;
        }
        let kind = Kind::of(arg);
        let wrong = |v: &toml::Value| err(format!("must be {}, got {}", kind.describe(), v.type_str()));
        match kind {
            Kind::Switch => {
                let on = value.as_bool().ok_or_else(|| wrong(value))?;
                if on == matches!(arg.get_action(), ArgAction::SetTrue) {
                    out.push(OsString::from(format!("--{long}")));
                }
            }
            Kind::Count => {
                let n = value
                    .as_integer()
                    .filter(|n| (0..=255).contains(n))
                    .ok_or_else(|| wrong(value))?;
                out.extend((0..n).map(|_| OsString::from(format!("--{long}"))));
            }
            _ => {
                let many = matches!(arg.get_action(), ArgAction::Append);
                let items = match value {
                    toml::Value::Array(items) if many => items.iter().collect(),
                    v => vec![v],
                };
                for item in items {
                    let text = kind.text(item, &base).ok_or_else(|| wrong(item))?;
                    check_value(arg, &text).map_err(err)?;
                    out.push(OsString::from(format!("--{long}={text}")));
                }
            }
        }
    }
    Ok(out)
}

/// Whether the flag's parser takes `text` (why not, when not).
fn check_value(arg: &Arg, text: &str) -> std::result::Result<(), String> {
    let lone = Arg::new("value")
        .long("value")
        .value_parser(arg.get_value_parser().clone());
    match Command::new("check")
        .no_binary_name(true)
        .arg(lone)
        .try_get_matches_from([format!("--value={text}")])
    {
        Ok(_) => Ok(()),
        Err(e) => {
            let why = std::error::Error::source(&e)
                .map(|s| format!(": {s}"))
                .unwrap_or_default();
            Err(format!("invalid value '{text}'{why}"))
        }
    }
}

/// `init`: the data dir, the key, the config file; prints the path and key.
fn run_init(bin: &Binary, cmd: &mut Command, m: &ArgMatches) -> Result<()> {
    let dir = std::path::absolute(data_dir(bin, m)?).context("cannot resolve the data dir")?;
    keyfiles::ensure_dir(&dir)?;
    let key = match bin.key {
        NodeKey::Identity => keyfiles::load_or_create_identity_key(&dir)?,
        NodeKey::Directory => keyfiles::load_or_create_directory_key(&dir)?,
    };
    let path = match m.get_one::<PathBuf>(CONFIG_ID) {
        Some(p) => std::path::absolute(p).context("cannot resolve --config")?,
        None => dir.join(CONFIG_FILE),
    };
    if path.exists() && !m.get_flag(FORCE_ID) {
        bail!(
            "{} exists; edit it, or run init again with --force to replace it",
            path.display()
        );
    }
    cmd.build();
    let text = render(bin, cmd, m, &dir);
    write_private(&path, &text)?;
    let key_b58 = nym_wire::address::encode_key(key.verifying_key().as_bytes());
    let label = match bin.key {
        NodeKey::Identity => "identity key",
        NodeKey::Directory => "directory key",
    };
    println!("config: {}\n{label}: {key_b58}", path.display());
    Ok(())
}

/// The commented config file: every flag with its value, under its help.
fn render(bin: &Binary, cmd: &Command, m: &ArgMatches, data_dir: &Path) -> String {
    let mut out = format!(
        "# {name} configuration, written by `{name} init`.\n\
         # Keys are the command-line flags without their leading `--` (kebab-case);\n\
         # a flag given on the command line overrides the value here. Relative paths\n\
         # are relative to this file's directory. `{name} --help` lists every flag.\n",
        name = bin.name
    );
    for (arg, long) in flags(cmd) {
        let id = arg.get_id().as_str();
        let kind = Kind::of(arg);
        out.push('\n');
        let help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        for line in help.lines() {
            comment(&mut out, line);
        }
        let raw: Vec<String> = if kind == Kind::Count {
            vec![m.get_count(id).to_string()]
        } else if long == DATA_DIR_KEY {
            vec![data_dir.display().to_string()]
        } else {
            m.get_raw(id)
                .map(|v| v.map(|s| s.to_string_lossy().into_owned()).collect())
                .unwrap_or_default()
        };
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        if !defaults.is_empty() && defaults != raw && kind != Kind::Switch {
            out.push_str(&format!("# (default: {})\n", defaults.join(", ")));
        }
        let values: Vec<toml::Value> = raw.iter().map(|r| kind.value(r)).collect();
        match values.as_slice() {
            [] => {
                let name = arg.get_value_names().and_then(|n| n.first()).map(|n| n.to_string());
                let placeholder = name.unwrap_or_else(|| id.to_uppercase());
                out.push_str(&format!("# {long} = \"{placeholder}\"\n"));
            }
            [v] if !matches!(arg.get_action(), ArgAction::Append) => out.push_str(&format!("{long} = {v}\n")),
            many => out.push_str(&format!("{long} = {}\n", toml::Value::Array(many.to_vec()))),
        }
    }
    out
}

/// `text` as `# ` lines of at most 80 columns (longer words stay whole).
fn comment(out: &mut String, text: &str) {
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() > 1 && line.len() + 1 + word.len() > 80 {
            out.push_str(&line);
            out.push('\n');
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
}

/// Writes `text` to `path`, 0600 whatever the umask.
fn write_private(path: &Path, text: &str) -> Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot make {} private", path.display()))?;
    }
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    /// Flags of every kind the binaries have, or may get: a flag added to a
    /// binary is in its config file with no code of its own.
    #[derive(clap::Parser, Debug, PartialEq)]
    struct Toy {
        /// Required, as `nym-mixnode --layer`.
        #[arg(long)]
        layer: u8,
        #[arg(long, default_value = "127.0.0.1:1")]
        listen: SocketAddr,
        #[arg(long)]
        data_dir: PathBuf,
        /// A switch, as `nym-directory --open`.
        #[arg(long)]
        open: bool,
        #[arg(long, value_name = "FILE")]
        authorities: Option<PathBuf>,
        #[arg(long, conflicts_with = "authorities")]
        directory: Option<String>,
        /// Needs --directory, as `--directory-key` might.
        #[arg(long, requires = "directory")]
        directory_key: Option<String>,
        #[arg(long)]
        peer: Vec<String>,
        #[arg(long, default_value_t = 0.5)]
        rate: f64,
        #[arg(short, long, action = ArgAction::Count)]
        verbose: u8,
    }

    const TOY: Binary = Binary {
        name: "toy",
        key: NodeKey::Identity,
        default_data_dir: None,
    };

    fn toy(args: &[&str]) -> Result<Option<Toy>> {
        parse_from::<Toy, _, _>(&TOY, std::iter::once("toy").chain(args.iter().copied()))
    }

    #[test]
    fn what_init_writes_reads_back_as_the_flags_that_made_it() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("toy");
        let d_s = d.to_str().unwrap();
        let auth = tmp.path().join("auth.txt");
        let flags = [
            "--data-dir",
            d_s,
            "--layer",
            "2",
            "--open",
            "--peer",
            "a",
            "--peer",
            "b b",
            "-vv",
        ];
        let with_auth = [&flags[..], &["--authorities", auth.to_str().unwrap(), "--rate", "0.25"]].concat();
        assert!(toy(&[&["init"], &with_auth[..]].concat()).unwrap().is_none());
        let text = fs::read_to_string(d.join(CONFIG_FILE)).unwrap();
        assert!(
            text.contains("# Required, as `nym-mixnode --layer`\nlayer = 2\n"),
            "{text}"
        );
        assert!(text.contains("\nopen = true\n"), "{text}");
        assert!(text.contains("\npeer = [\"a\", \"b b\"]\n"), "{text}");
        assert!(text.contains("\n# directory = \"DIRECTORY\"\n"), "{text}");
        assert!(text.contains("# (default: 0.5)\nrate = 0.25\n"), "{text}");
        let from_flags = toy(&with_auth).unwrap().unwrap();
        let from_file = toy(&["--data-dir", d_s]).unwrap().unwrap();
        assert_eq!(from_file, from_flags);
        assert_eq!(from_file.verbose, 2);
    }

    #[test]
    fn the_command_line_wins_also_over_a_conflicting_file_value() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let d_s = d.to_str().unwrap();
        fs::write(
            d.join(CONFIG_FILE),
            "layer = 1\ndirectory = \"http://x\"\nopen = false\nrate = 2\n",
        )
        .unwrap();
        let t = toy(&["--data-dir", d_s, "--layer", "3", "--authorities", "/etc/a.txt"])
            .unwrap()
            .unwrap();
        assert_eq!(
            (t.layer, t.directory, t.authorities),
            (3, None, Some(PathBuf::from("/etc/a.txt")))
        );
        assert_eq!((t.open, t.rate), (false, 2.0), "an integer is a number");
        let t = toy(&["--data-dir", d_s]).unwrap().unwrap();
        assert_eq!((t.layer, t.directory.as_deref()), (1, Some("http://x")));
        // a flag that requires one the file gives
        let t = toy(&["--data-dir", d_s, "--directory-key", "K"]).unwrap().unwrap();
        assert_eq!(
            (t.directory.as_deref(), t.directory_key.as_deref()),
            (Some("http://x"), Some("K"))
        );
        // a relative path in the file is relative to the file
        fs::write(d.join(CONFIG_FILE), "layer = 1\nauthorities = \"auth.txt\"\n").unwrap();
        assert_eq!(
            toy(&["--data-dir", d_s]).unwrap().unwrap().authorities,
            Some(d.join("auth.txt"))
        );
    }

    #[test]
    fn wrong_types_are_errors_naming_the_key() {
        let tmp = tempfile::tempdir().unwrap();
        let d_s = tmp.path().to_str().unwrap();
        for (text, want) in [
            ("open = \"yes\"", "key `open`: must be true or false, got string"),
            ("peer = [1]", "key `peer`: must be a string, got integer"),
            ("verbose = -1", "key `verbose`: must be an integer"),
            ("rate = \"fast\"", "key `rate`: must be a number, got string"),
            ("rate = 1e400", "not valid TOML"),
        ] {
            fs::write(tmp.path().join(CONFIG_FILE), format!("layer = 1\n{text}\n")).unwrap();
            let e = format!("{:#}", toy(&["--data-dir", d_s]).unwrap_err());
            assert!(e.contains(want) && e.contains(CONFIG_FILE), "{text}: {e}");
        }
    }
}
