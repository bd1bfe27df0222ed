//! Loading specs: `base.yaml` deep-merged with `<env>.yaml`, parsed in two
//! steps (structure by serde, then semantic [`validate`]), every error located
//! as `file:line:column: path: message`.

pub mod de;
pub mod model;
pub mod validate;
pub mod yaml;

use std::fmt;
use std::path::{Path, PathBuf};

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

/// Loads and validates environment `env` from `dir`.
pub fn load(dir: &Path, env: &str) -> Result<EnvSpec, LoadError> {
    if env.is_empty() || !env.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') || env == "base" {
        return Err(LoadError::Environment(format!("{env:?} is not an environment name (lower-case letters, digits and '-')")));
    }
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
    let mut trees = Vec::new();
    let mut errors = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read { path: path.clone(), source })?;
        match yaml::parse(&path.display().to_string(), &text) {
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
    Ok(EnvSpec { env: env.to_string(), spec })
}

/// The top-level sections of a spec, as written in YAML.
const SECTIONS: &[&str] = &["region", "tags", "account", "policies", "network", "messaging", "data", "compute", "identity", "observability"];

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
            "policies" => section(key, node, &mut errors, |v| spec.policies = v),
            "network" => section(key, node, &mut errors, |v| spec.network = v),
            "messaging" => section(key, node, &mut errors, |v| spec.messaging = v),
            "data" => section(key, node, &mut errors, |v| spec.data = v),
            "compute" => section(key, node, &mut errors, |v| spec.compute = v),
            "identity" => section(key, node, &mut errors, |v| spec.identity = v),
            "observability" => section(key, node, &mut errors, |v| spec.observability = v),
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
