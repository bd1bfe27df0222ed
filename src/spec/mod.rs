//! Loading specs: `base.yaml` deep-merged with `<env>.yaml`, parsed in two
//! steps (structure by serde, then semantic [`validate`]), every error located
//! as `file:line:column: path: message`.

pub mod adopt;
pub mod compute;
pub mod data;
pub mod de;
pub mod emit;
pub mod iam;
pub mod identity;
pub mod images;
pub mod lease_table;
pub mod load_balancing;
pub mod messaging;
pub mod model;
pub mod network;
pub mod observability;
pub mod security;
pub mod validate;
pub mod yaml;

use std::collections::BTreeSet;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;

pub use model::Spec;
use yaml::{Key, Loc, Node, Value};

/// The base file every environment file is merged onto.
pub const BASE_FILE: &str = "base.yaml";

/// A validated spec for one environment.
#[derive(Debug, Clone)]
pub struct EnvSpec {
    /// Environment name (the env file's stem: `dev`, `staging`, `prod`).
    pub env: String,
    /// The merged, validated spec.
    pub spec: Spec,
    /// Whitelist pool entries whose lost address may, in this run only, be
    /// replaced by a fresh one (`--reallocate-whitelist`); never from a file.
    pub reallocate_whitelist: BTreeSet<String>,
    /// Where the pass runs, learnt from AWS before it plans; `None` outside a pass.
    pub aws: Option<AwsContext>,
    /// The operator's own event plumbing (`run --events`); never from a file.
    pub events: Option<EventPlumbing>,
}

/// Logical ids starting with this name the operator's own resources (its
/// event plumbing), never the spec's (validation refuses them): a pass that
/// does not want them leaves them alone rather than orphaning them.
pub const OPERATOR_ID_PREFIX: &str = "operator.";
/// The logical id of the operator's event queue.
pub const EVENT_QUEUE_ID: &str = "operator.events";
/// The logical id of its dead-letter queue.
pub const EVENT_DEAD_LETTER_ID: &str = "operator.events-dlq";
/// The logical id of the operator's event rule.
pub const EVENT_RULE_ID: &str = "operator.events";

/// The EventBridge rule and SQS queues that bring the account's API calls to
/// the daemon (`run --events`): resources the operator owns, reconciled with
/// the estate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventPlumbing {
    /// The rule's name (on the default bus).
    pub rule: String,
    /// Its event pattern (JSON).
    pub pattern: String,
    /// The queue it sends to.
    pub queue: String,
    /// The queue's dead-letter queue (also the rule target's).
    pub dead_letter_queue: String,
}

/// What a pass learns from AWS before it plans: the account and region it
/// writes to, and the public SSM parameters the kinds asked for (the
/// ECS-optimized AMI), resolved at plan time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsContext {
    /// The account id (STS GetCallerIdentity).
    pub account: String,
    /// The region.
    pub region: String,
    /// Parameter name → value.
    pub parameters: std::collections::BTreeMap<String, String>,
}

impl EnvSpec {
    /// A loaded spec of environment `env`, before any pass.
    pub fn new(env: &str, spec: Spec) -> Self {
        EnvSpec { env: env.to_string(), spec, reallocate_whitelist: BTreeSet::new(), aws: None, events: None }
    }

    /// `text` with `${env}`, and within a pass `${account}` and `${region}`, replaced.
    pub fn substitute(&self, text: &str) -> String {
        let text = text.replace("${env}", &self.env);
        match &self.aws {
            Some(aws) => text.replace("${account}", &aws.account).replace("${region}", &aws.region),
            None => text,
        }
    }

    /// The ARN of `resource` of AWS service `service` in this pass's account
    /// and region (`regional: false` for global services such as IAM).
    pub fn arn(&self, service: &str, regional: bool, resource: &str) -> String {
        let (account, region) = self.aws.as_ref().map_or(("${account}", "${region}"), |a| (a.account.as_str(), a.region.as_str()));
        let region = if regional { region } else { "" };
        let partition = if region.starts_with("cn-") {
            "aws-cn"
        } else if region.starts_with("us-gov-") {
            "aws-us-gov"
        } else {
            "aws"
        };
        format!("arn:{partition}:{service}:{region}:{account}:{resource}")
    }

    /// The value of public SSM parameter `name` resolved for this pass.
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.aws.as_ref()?.parameters.get(name).map(String::as_str)
    }
}

/// One located problem in a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// Where it is.
    pub loc: Loc,
    /// Dotted spec path (`messaging.queues.orders.name`); empty for syntax errors.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl SpecError {
    /// A problem with file `file` as a whole, located at its start.
    pub fn whole_file(file: &str, message: String) -> SpecError {
        SpecError { loc: Loc { file: Arc::from(file), line: 1, col: 1 }, path: String::new(), message }
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.loc, self.message)
        } else {
            write!(f, "{}: {}: {}", self.loc, self.path, self.message)
        }
    }
}

/// Why specs could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The environment name is not usable.
    #[error("{0}")]
    Environment(String),
    /// The spec has problems; all of them are listed.
    #[error("{}", display_all(.0))]
    Invalid(Vec<SpecError>),
}

fn display_all(errors: &[SpecError]) -> String {
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    format!("{}\n{} error{} in spec", lines.join("\n"), errors.len(), if errors.len() == 1 { "" } else { "s" })
}

/// The physical name of a resource: `name` with `${env}` replaced, else `sentry-<id>-<env>`.
pub fn physical_name(name: Option<&str>, id: &str, env: &str) -> String {
    match name {
        Some(name) => name.replace("${env}", env),
        None => format!("sentry-{id}-{env}"),
    }
}

/// The environments defined in `dir`: every `*.yaml` but `base.yaml`, sorted.
/// Only names are read (no file is opened), so a FIFO or device named
/// `x.yaml` is listed, and [`load`] then refuses it.
pub fn environments(dir: &Path) -> Result<Vec<String>, LoadError> {
    let read = |source| LoadError::Read { path: dir.to_path_buf(), source };
    let mut envs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read)? {
        let path = entry.map_err(read)?.path();
        if path.extension().is_some_and(|e| e == "yaml") && path.file_name().is_some_and(|n| n != BASE_FILE) {
            if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                envs.push(stem.to_string());
            }
        }
    }
    envs.sort();
    Ok(envs)
}

/// Checks an environment name: lower-case letters, digits and '-', not `base`.
pub fn check_environment_name(env: &str) -> Result<(), LoadError> {
    if env.is_empty() || !env.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') || env == "base" {
        return Err(LoadError::Environment(format!("{env:?} is not an environment name (lower-case letters, digits and '-')")));
    }
    Ok(())
}

/// Loads and validates environment `env` from `dir`.
pub fn load(dir: &Path, env: &str) -> Result<EnvSpec, LoadError> {
    check_environment_name(env)?;
    let env_path = dir.join(format!("{env}.yaml"));
    if !env_path.exists() {
        let known = environments(dir)?;
        return Err(LoadError::Environment(format!(
            "no spec for environment {env:?}: {} does not exist (environments in {}: {})",
            env_path.display(),
            dir.display(),
            if known.is_empty() { "none".to_string() } else { known.join(", ") }
        )));
    }
    let base_path = dir.join(BASE_FILE);
    let mut files = vec![env_path];
    if base_path.exists() {
        files.insert(0, base_path);
    }
    let mut texts = Vec::new();
    for path in &files {
        texts.push((path.display().to_string(), read_file(path)?));
    }
    load_texts(env, texts)
}

/// Loads and validates environment `env` from its files' texts, named as in
/// error locations: the base file's (if any) first, then the environment's.
/// A file that could not be read is its located error.
pub fn load_texts(env: &str, files: Vec<(String, Result<String, SpecError>)>) -> Result<EnvSpec, LoadError> {
    check_environment_name(env)?;
    let mut trees = Vec::new();
    let mut errors = Vec::new();
    for (name, text) in files {
        let text = match text {
            Ok(text) => text,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        match yaml::parse(&name, &text) {
            Ok(tree) => trees.push(tree),
            Err(e) => errors.push(SpecError { loc: e.loc, path: String::new(), message: e.message }),
        }
    }
    if !errors.is_empty() {
        return Err(LoadError::Invalid(errors));
    }
    let tree = trees.into_iter().reduce(yaml::merge).ok_or_else(|| LoadError::Environment("no spec files".into()))?;
    let spec = structure(&tree).map_err(LoadError::Invalid)?;
    let problems = validate::validate(env, &spec);
    if !problems.is_empty() {
        let errors = problems.into_iter().map(|p| SpecError { loc: tree.locate(&p.path).clone(), path: p.path.join("."), message: p.message }).collect();
        return Err(LoadError::Invalid(errors));
    }
    Ok(EnvSpec::new(env, spec))
}

/// Reads one spec file: a regular file (after following links) of at most
/// [`yaml::MAX_FILE_BYTES`]. Anything else (a FIFO, a device such as
/// `/dev/zero`, a directory, a larger file) is a located error at `file:1:1`,
/// found without blocking and without reading more than the limit.
/// The outer error is an I/O failure, the inner one a located problem.
pub fn read_file(path: &Path) -> Result<Result<String, SpecError>, LoadError> {
    let io = |source| LoadError::Read { path: path.to_path_buf(), source };
    let located = |message: String| SpecError::whole_file(&path.display().to_string(), message);
    const LIMIT: usize = yaml::MAX_FILE_BYTES;
    // Checked before opening: opening a FIFO for reading blocks until a writer appears.
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Ok(Err(located(not_regular(&meta))));
    }
    let file = std::fs::File::open(path).map_err(io)?;
    // Checked again on what was opened, in case the path changed in between.
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Ok(Err(located(not_regular(&meta))));
    }
    let Some(bytes) = read_at_most(file, LIMIT).map_err(io)? else {
        // A file that grew since `meta` was taken is reported without a size.
        let message = match usize::try_from(meta.len()) {
            Ok(len) if len > LIMIT => format!("file is {len} bytes; the limit is {LIMIT}"),
            _ => format!("file is more than {LIMIT} bytes; the limit is {LIMIT}"),
        };
        return Ok(Err(located(message)));
    };
    String::from_utf8(bytes).map(Ok).map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
}

/// Reads `reader` to its end, reading at most `limit + 1` bytes: `None` when
/// there are more than `limit`, so an endless source costs bounded time and memory.
fn read_at_most(reader: impl Read, limit: usize) -> std::io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    reader.take(u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1)).read_to_end(&mut bytes)?;
    Ok((bytes.len() <= limit).then_some(bytes))
}

/// The message for a spec path that is not a regular file.
fn not_regular(meta: &std::fs::Metadata) -> String {
    let kind = meta.file_type();
    let what = if kind.is_dir() { "a directory" } else { special_file_kind(&kind) };
    format!("{what}, not a regular file; a spec must be a regular file")
}

#[cfg(unix)]
fn special_file_kind(kind: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_fifo() {
        "a named pipe (FIFO)"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

#[cfg(not(unix))]
fn special_file_kind(_kind: &std::fs::FileType) -> &'static str {
    "a special file"
}

/// The top-level sections of a spec, as written in YAML.
const SECTIONS: &[&str] = &[
    "region",
    "tags",
    "account",
    "leaseTable",
    "policies",
    "network",
    "messaging",
    "data",
    "iam",
    "compute",
    "identity",
    "observability",
    "images",
    "security",
    "loadBalancing",
    "adopt",
];

/// Deserializes each top-level section on its own, so that a mistake in one
/// section does not hide mistakes in the others.
fn structure(tree: &Node) -> Result<Spec, Vec<SpecError>> {
    let Value::Map(entries) = &tree.value else {
        return Err(vec![SpecError {
            loc: tree.loc.clone(),
            path: String::new(),
            message: format!("a spec is a map of sections ({}); found {}", SECTIONS.join(", "), tree.type_name()),
        }]);
    };
    let mut spec = Spec::default();
    let mut errors = Vec::new();
    for (key, node) in entries {
        let name = key.name.as_str();
        match name {
            "region" => section(key, node, &mut errors, |v| spec.region = v),
            "tags" => section(key, node, &mut errors, |v| spec.tags = v),
            "account" => section(key, node, &mut errors, |v| spec.account = v),
            "leaseTable" => section(key, node, &mut errors, |v| spec.lease_table = v),
            "policies" => section(key, node, &mut errors, |v| spec.policies = v),
            "network" => section(key, node, &mut errors, |v| spec.network = v),
            "messaging" => section(key, node, &mut errors, |v| spec.messaging = v),
            "data" => section(key, node, &mut errors, |v| spec.data = v),
            "iam" => section(key, node, &mut errors, |v| spec.iam = v),
            "compute" => section(key, node, &mut errors, |v| spec.compute = v),
            "identity" => section(key, node, &mut errors, |v| spec.identity = v),
            "observability" => section(key, node, &mut errors, |v| spec.observability = v),
            "images" => section(key, node, &mut errors, |v| spec.images = v),
            "security" => section(key, node, &mut errors, |v| spec.security = v),
            "loadBalancing" => section(key, node, &mut errors, |v| spec.load_balancing = v),
            "adopt" => section(key, node, &mut errors, |v| spec.adopt = v),
            _ => errors.push(SpecError {
                loc: key.loc.clone(),
                path: name.to_string(),
                message: format!("unknown section `{name}`, expected one of {}", SECTIONS.join(", ")),
            }),
        }
    }
    if errors.is_empty() {
        Ok(spec)
    } else {
        Err(errors)
    }
}

fn section<T: DeserializeOwned>(key: &Key, node: &Node, errors: &mut Vec<SpecError>, set: impl FnOnce(T)) {
    match de::from_node::<T>(node) {
        Ok(value) => set(value),
        Err(e) => {
            let mut path = vec![key.name.clone()];
            path.extend(e.path);
            // Errors about a whole section (a missing field) point at its key.
            let loc = match (e.loc, &node.value) {
                (Some(loc), _) => loc,
                (None, Value::Map(_) | Value::Seq(_)) => key.loc.clone(),
                (None, _) => node.loc.clone(),
            };
            errors.push(SpecError { loc, path: path.join("."), message: e.message });
        }
    }
}

/// The JSON Schema of a spec file, for editors.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Spec)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_list_matches_the_schema() {
        let schema = json_schema();
        let mut props: Vec<&str> = schema["properties"].as_object().map(|m| m.keys().map(String::as_str).collect()).unwrap_or_default();
        props.sort();
        let mut sections = SECTIONS.to_vec();
        sections.sort();
        assert_eq!(props, sections);
    }

    /// Runs `f` on its own thread and fails (instead of hanging) when it takes more than 5 s.
    fn within_5s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(5)).expect("returned within 5 s: a spec file must never block the loader")
    }

    /// A spec directory holding a valid `base.yaml`.
    fn spec_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(BASE_FILE), "region: eu-west-1\n").expect("base.yaml");
        dir
    }

    /// Loads `env` from `dir` within 5 s; the error lines it reports.
    fn load_errors(dir: &Path, env: &str) -> Vec<String> {
        let (dir, env) = (dir.to_path_buf(), env.to_string());
        match within_5s(move || load(&dir, &env)) {
            Ok(_) => panic!("loaded"),
            Err(LoadError::Invalid(errors)) => errors.iter().map(ToString::to_string).collect(),
            Err(e) => panic!("not a located error: {e}"),
        }
    }

    #[cfg(unix)]
    fn mkfifo(path: &Path) {
        let status = std::process::Command::new("mkfifo").arg(path).status().expect("run mkfifo");
        assert!(status.success(), "mkfifo {}", path.display());
    }

    /// Asserts that a `dev.yaml` made by `make` (given its path) is refused,
    /// at its start, as `what` and not a regular file.
    fn assert_dev_spec_refused_as(make: impl FnOnce(&Path), what: &str) {
        let dir = spec_dir();
        let path = dir.path().join("dev.yaml");
        make(&path);
        let errors = load_errors(dir.path(), "dev");
        assert_eq!(errors, vec![format!("{}:1:1: {what}, not a regular file; a spec must be a regular file", path.display())]);
    }

    #[test]
    #[cfg(unix)]
    fn a_spec_linked_to_dev_zero_is_refused_without_reading_it() {
        assert_dev_spec_refused_as(|path| std::os::unix::fs::symlink("/dev/zero", path).expect("symlink"), "a character device");
    }

    #[test]
    #[cfg(unix)]
    fn a_fifo_spec_is_refused_without_opening_it() {
        assert_dev_spec_refused_as(mkfifo, "a named pipe (FIFO)");
    }

    #[test]
    #[cfg(unix)]
    fn a_fifo_base_is_refused_and_the_env_file_still_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        mkfifo(&dir.path().join(BASE_FILE));
        std::fs::write(dir.path().join("dev.yaml"), "a: [\n").expect("dev.yaml");
        let errors = load_errors(dir.path(), "dev");
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].starts_with(&format!("{}:1:1: a named pipe (FIFO)", dir.path().join(BASE_FILE).display())), "{errors:?}");
        assert!(errors[1].starts_with(&dir.path().join("dev.yaml").display().to_string()), "{errors:?}");
    }

    #[test]
    fn a_directory_named_like_a_spec_is_refused() {
        assert_dev_spec_refused_as(|path| std::fs::create_dir(path).expect("mkdir"), "a directory");
    }

    #[test]
    fn a_file_one_byte_over_the_limit_is_refused_at_its_start() {
        let dir = spec_dir();
        let path = dir.path().join("dev.yaml");
        std::fs::write(&path, "#".repeat(yaml::MAX_FILE_BYTES + 1)).expect("dev.yaml");
        let errors = load_errors(dir.path(), "dev");
        assert_eq!(errors, vec![format!("{}:1:1: file is 1048577 bytes; the limit is 1048576", path.display())]);
        // Exactly at the limit is not a size error.
        std::fs::write(&path, "#".repeat(yaml::MAX_FILE_BYTES)).expect("dev.yaml");
        let d = dir.path().to_path_buf();
        assert_eq!(within_5s(move || load(&d, "dev").map(|_| ()).map_err(|e| e.to_string())), Ok(()));
    }

    #[test]
    fn reading_stops_one_byte_past_the_limit() {
        let endless = within_5s(|| read_at_most(std::io::repeat(b'#'), 1000).map(|b| b.map(|b| b.len())));
        assert_eq!(endless.expect("reads"), None);
        assert_eq!(read_at_most(&b"0123456789"[..], 10).expect("reads"), Some(b"0123456789".to_vec()));
        assert_eq!(read_at_most(&b"0123456789X"[..], 10).expect("reads"), None);
    }

    #[test]
    #[cfg(unix)]
    fn environments_lists_a_fifo_without_opening_it_and_load_refuses_it() {
        let dir = spec_dir();
        mkfifo(&dir.path().join("x.yaml"));
        std::fs::write(dir.path().join("dev.yaml"), "").expect("dev.yaml");
        let listed = within_5s({
            let d = dir.path().to_path_buf();
            move || environments(&d).map_err(|e| e.to_string())
        });
        assert_eq!(listed.expect("listed"), vec!["dev".to_string(), "x".to_string()]);
        let errors = load_errors(dir.path(), "x");
        assert!(errors[0].ends_with(":1:1: a named pipe (FIFO), not a regular file; a spec must be a regular file"), "{errors:?}");
    }

    #[test]
    fn errors_in_several_sections_are_all_reported() {
        let tree = yaml::parse("x.yaml", "region: 5\nmessaging:\n  queus: {}\nbogus: 1\n").expect("yaml");
        let errors = structure(&tree).expect_err("invalid");
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[0].starts_with("x.yaml:1:9: region: invalid type: integer `5`"), "{}", lines[0]);
        assert!(lines[1].starts_with("x.yaml:3:3: messaging.queus: unknown field `queus`"), "{}", lines[1]);
        assert!(lines[2].starts_with("x.yaml:4:1: bogus: unknown section `bogus`"), "{}", lines[2]);
    }
}
