//! Where specs come from: a directory, or an S3 prefix (`s3://bucket/prefix/`)
//! that CI publishes to. Either holds `base.yaml`, one `<env>.yaml` per
//! environment and, optionally, a `REVISION` file: its first line labels the
//! set (a git SHA; see [`crate::lease::revision`]), and the lines after it,
//! if any, are `sha256sum *.yaml` of the set — a manifest. A set with a
//! manifest is used only when its files are exactly the ones listed, with
//! those hashes: a set caught half-published (CI uploads the files, then
//! `REVISION`) is not used until it is whole.
//!
//! An S3 source is read with one ListObjectsV2 per poll; only the objects
//! whose ETag changed are fetched again (unchanged files cost no read), and
//! the version id of each object in use is kept, to be logged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use aws_config::SdkConfig;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::aws::{AwsError, AwsResult, CallCounter};
use crate::lease::revision::check_label;
use crate::spec::{self, yaml::MAX_FILE_BYTES, EnvSpec, LoadError, SpecError, BASE_FILE};

/// The file whose one line labels a spec set.
pub const REVISION_FILE: &str = "REVISION";

/// What can go wrong reading a spec source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A malformed `s3://` URL.
    #[error("{0:?} is not an S3 spec source: write s3://bucket/prefix/ (a bucket name of 3-63 of a-z 0-9 . -)")]
    BadUrl(String),
    /// The bucket does not exist.
    #[error("the spec bucket {0} does not exist")]
    NoBucket(String),
    /// The bucket is in another region than the one asked.
    #[error("the spec bucket {bucket} is not in region {region}: give --region with the bucket's region ({detail})")]
    OtherRegion {
        /// The bucket.
        bucket: String,
        /// The region asked.
        region: String,
        /// AWS's words.
        detail: String,
    },
    /// Reading was refused.
    #[error("reading the specs in {url} was refused: {detail} (the operator needs s3:ListBucket on the bucket and s3:GetObject on the prefix)")]
    Denied {
        /// The source.
        url: String,
        /// AWS's words.
        detail: String,
    },
    /// Another failure of S3.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// A directory that cannot be read.
    #[error("reading {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The set does not match its manifest (yet).
    #[error("the spec set in {url} is not whole: {detail} (its REVISION lists what the set holds; publish REVISION last)")]
    Incomplete {
        /// The source.
        url: String,
        /// What differs.
        detail: String,
    },
    /// A bad `REVISION` file.
    #[error("{file}: {message}")]
    Revision {
        /// The file.
        file: String,
        /// What is wrong.
        message: String,
    },
}

/// Where specs live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A local directory.
    Dir(PathBuf),
    /// Objects under `prefix` (empty, or ending in `/`) in `bucket`.
    S3 {
        /// The bucket.
        bucket: String,
        /// The key prefix.
        prefix: String,
    },
}

impl Location {
    /// Reads `--specs`: `s3://bucket/prefix/`, or a directory.
    pub fn parse(arg: &Path) -> Result<Location, SourceError> {
        let text = arg.to_string_lossy();
        let Some(rest) = text.strip_prefix("s3://") else { return Ok(Location::Dir(arg.to_path_buf())) };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
            && !bucket.starts_with(['.', '-'])
            && !bucket.ends_with(['.', '-']);
        if !bucket_ok || prefix.split('/').any(|part| part == "..") {
            return Err(SourceError::BadUrl(text.into_owned()));
        }
        let prefix = if prefix.is_empty() || prefix.ends_with('/') { prefix.to_string() } else { format!("{prefix}/") };
        Ok(Location::S3 { bucket: bucket.to_string(), prefix })
    }

    /// The source as a user names it.
    pub fn url(&self) -> String {
        match self {
            Location::Dir(dir) => dir.display().to_string(),
            Location::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}"),
        }
    }
}

/// One file of a set: its text (or why it cannot be used), and its S3 identity.
#[derive(Debug, Clone)]
struct Object {
    etag: String,
    version: Option<String>,
    text: Result<String, String>,
}

/// A spec set as read at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// File name → located text (the name as error locations show it).
    files: BTreeMap<String, (String, Result<String, SpecError>)>,
    /// The set's label, from its `REVISION` file.
    pub label: Option<String>,
    /// S3 key → version id of the objects read (empty for a directory).
    pub versions: BTreeMap<String, String>,
}

impl Snapshot {
    /// The environments it defines.
    pub fn environments(&self) -> Vec<String> {
        self.files.keys().filter_map(|f| f.strip_suffix(".yaml")).filter(|e| *e != "base").map(str::to_string).collect()
    }

    /// Loads and validates `env` from it.
    pub fn load(&self, env: &str) -> Result<EnvSpec, LoadError> {
        spec::check_environment_name(env)?;
        let Some(env_file) = self.files.get(&format!("{env}.yaml")) else {
            let known = self.environments();
            return Err(LoadError::Environment(format!(
                "no spec for environment {env:?} (environments: {})",
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            )));
        };
        let texts = self.files.get(BASE_FILE).into_iter().chain([env_file]).cloned().collect();
        spec::load_texts(env, texts)
    }
}

/// A spec source, read again when it changes.
pub struct Source {
    location: Location,
    s3: Option<aws_sdk_s3::Client>,
    /// S3 key → the object last read.
    objects: tokio::sync::Mutex<BTreeMap<String, Object>>,
    /// The region S3 is asked in.
    region: String,
}

/// What identifies a directory's content: each spec file's name and modification time.
pub type DirStamp = Vec<(String, Option<SystemTime>)>;

impl Source {
    /// The source at `location`; S3 is reached with `config`.
    pub fn new(location: Location, config: &SdkConfig, counter: &CallCounter) -> Source {
        let s3 = matches!(location, Location::S3 { .. }).then(|| {
            // An endpoint of its own (the emulator) serves buckets by path, not by host name.
            let path_style = config.endpoint_url().is_some();
            aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(config)
                    .force_path_style(path_style)
                    .interceptor(counter.clone())
                    .interceptor(crate::aws::CreatesSentOnce)
                    .build(),
            )
        });
        let region = config.region().map(|r| r.to_string()).unwrap_or_default();
        Source { location, s3, objects: tokio::sync::Mutex::new(BTreeMap::new()), region }
    }

    /// Where it reads.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The stamp of a directory source (`None` for S3): what changes when a spec file does.
    pub fn dir_stamp(&self) -> Option<DirStamp> {
        let Location::Dir(dir) = &self.location else { return None };
        let mut stamp: DirStamp = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "yaml") || p.file_name().is_some_and(|n| n == REVISION_FILE))
                    .map(|p| (p.display().to_string(), std::fs::metadata(&p).and_then(|m| m.modified()).ok()))
                    .collect()
            })
            .unwrap_or_default();
        stamp.sort();
        Some(stamp)
    }

    /// The set as it is now: a directory is read afresh; an S3 prefix is
    /// listed, and only the objects that changed since the last read are fetched.
    pub async fn snapshot(&self, envs: &[String]) -> Result<Snapshot, SourceError> {
        match &self.location {
            Location::Dir(dir) => dir_snapshot(dir, envs),
            Location::S3 { bucket, prefix } => self.s3_snapshot(bucket, prefix).await,
        }
    }

    async fn s3_snapshot(&self, bucket: &str, prefix: &str) -> Result<Snapshot, SourceError> {
        let Some(client) = &self.s3 else { return Err(SourceError::BadUrl(self.location.url())) };
        let classify = |e: AwsError| match e.code.as_deref() {
            Some("NoSuchBucket") => SourceError::NoBucket(bucket.to_string()),
            Some("PermanentRedirect" | "AuthorizationHeaderMalformed" | "IllegalLocationConstraintException") => {
                SourceError::OtherRegion { bucket: bucket.to_string(), region: self.region.clone(), detail: e.to_string() }
            }
            Some("AccessDenied" | "AllAccessDisabled" | "InvalidAccessKeyId" | "SignatureDoesNotMatch") => {
                SourceError::Denied { url: self.location.url(), detail: e.to_string() }
            }
            _ => SourceError::Aws(e),
        };
        // The listing: name → (ETag, size) of every spec file directly under the prefix.
        let mut listed = BTreeMap::new();
        let mut token = None;
        loop {
            let out = client.list_objects_v2().bucket(bucket).prefix(prefix).delimiter("/").set_continuation_token(token.take()).send().await;
            let out = out.aws("S3.ListObjectsV2").map_err(classify)?;
            for object in out.contents() {
                let Some(key) = object.key() else { continue };
                let Some(name) = key.strip_prefix(prefix).filter(|n| !n.contains('/')) else { continue };
                if name.ends_with(".yaml") || name == REVISION_FILE {
                    listed.insert(name.to_string(), (object.e_tag().unwrap_or_default().to_string(), object.size().unwrap_or(0)));
                }
            }
            match out.next_continuation_token() {
                Some(next) if out.is_truncated() == Some(true) => token = Some(next.to_string()),
                _ => break,
            }
        }
        let mut objects = self.objects.lock().await;
        objects.retain(|name, _| listed.contains_key(name));
        for (name, (etag, size)) in &listed {
            if objects.get(name).is_some_and(|o| &o.etag == etag) {
                continue;
            }
            let object = if usize::try_from(*size).map_or(true, |s| s > MAX_FILE_BYTES) {
                Object { etag: etag.clone(), version: None, text: Err(format!("file is {size} bytes; the limit is {MAX_FILE_BYTES}")) }
            } else {
                let got = client.get_object().bucket(bucket).key(format!("{prefix}{name}")).send().await.aws("S3.GetObject");
                let out = match got {
                    // Deleted between the listing and now: a publish in progress.
                    Err(e) if e.code.as_deref() == Some("NoSuchKey") => {
                        return Err(SourceError::Incomplete { url: self.location.url(), detail: format!("{name} was deleted while being read") })
                    }
                    other => other.map_err(classify)?,
                };
                let version = out.version_id().map(str::to_string);
                let etag = out.e_tag().unwrap_or(etag).to_string();
                let mut bytes = Vec::new();
                let mut body = out.body.into_async_read().take(u64::try_from(MAX_FILE_BYTES).unwrap_or(u64::MAX) + 1);
                body.read_to_end(&mut bytes).await.map_err(|e| AwsError::unexpected("S3.GetObject", format!("reading {name}: {e}")))?;
                let text = if bytes.len() > MAX_FILE_BYTES {
                    Err(format!("file is more than {MAX_FILE_BYTES} bytes; the limit is {MAX_FILE_BYTES}"))
                } else {
                    String::from_utf8(bytes).map_err(|_| "file is not UTF-8 text".to_string())
                };
                Object { etag, version, text }
            };
            objects.insert(name.clone(), object);
        }
        let url = self.location.url();
        let mut snapshot = Snapshot::default();
        let mut revision = None;
        for (name, object) in objects.iter() {
            let shown = format!("{url}{name}");
            if let Some(version) = &object.version {
                snapshot.versions.insert(format!("{prefix}{name}"), version.clone());
            }
            if name == REVISION_FILE {
                revision = Some(manifest(&shown, object.text.clone())?);
            } else {
                let text = object.text.clone().map_err(|message| SpecError::whole_file(&shown, message));
                snapshot.files.insert(name.clone(), (shown, text));
            }
        }
        if let Some(revision) = revision {
            check_whole(&revision, &snapshot.files, |_| true).map_err(|detail| SourceError::Incomplete { url, detail })?;
            snapshot.label = Some(revision.label);
        }
        Ok(snapshot)
    }
}

/// A `REVISION` file: the set's label and, if listed, each file's SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Manifest {
    label: String,
    files: BTreeMap<String, String>,
}

/// Reads a `REVISION` file's text.
fn manifest(file: &str, text: Result<String, String>) -> Result<Manifest, SourceError> {
    let bad = |message: String| SourceError::Revision { file: file.to_string(), message };
    let text = text.map_err(bad)?;
    let mut lines = text.lines();
    let label = lines.next().unwrap_or_default().trim_end_matches('\r').to_string();
    check_label(&label).map_err(bad)?;
    let mut files = BTreeMap::new();
    for (n, line) in lines.enumerate().map(|(i, l)| (i + 2, l.trim_end_matches('\r'))).filter(|(_, l)| !l.is_empty()) {
        // `sha256sum` prints `<hash>  <name>` (or `<hash> *<name>` in binary mode).
        let entry = line.split_once("  ").or_else(|| line.split_once(" *"));
        let Some((hash, name)) = entry.filter(|(h, n)| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()) && n.ends_with(".yaml") && !n.contains('/'))
        else {
            return Err(bad(format!("line {n}: expected `<sha256>  <file>.yaml` (the output of sha256sum *.yaml), found {line:?}")));
        };
        files.insert(name.to_string(), hash.to_ascii_lowercase());
    }
    Ok(Manifest { label, files })
}

/// The SHA-256 of `text`, in hex.
fn sha256(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks `files` (name → text) against the manifest: each must be listed
/// with its hash, and each listed file for which `expected` holds must be there.
fn check_whole(manifest: &Manifest, files: &BTreeMap<String, (String, Result<String, SpecError>)>, expected: impl Fn(&str) -> bool) -> Result<(), String> {
    if manifest.files.is_empty() {
        return Ok(());
    }
    for (name, (_, text)) in files {
        match (manifest.files.get(name), text) {
            (None, _) => return Err(format!("{name} is not in the manifest")),
            (Some(hash), Ok(text)) if *hash == sha256(text) => {}
            (Some(_), _) => return Err(format!("{name} differs from the manifest")),
        }
    }
    match manifest.files.keys().find(|name| expected(name) && !files.contains_key(*name)) {
        Some(missing) => Err(format!("{missing} is missing")),
        None => Ok(()),
    }
}

/// A directory's set: the base file, the files of `envs`, and its label.
fn dir_snapshot(dir: &Path, envs: &[String]) -> Result<Snapshot, SourceError> {
    let mut snapshot = Snapshot::default();
    let io = |source| SourceError::Dir { path: dir.to_path_buf(), source };
    let names = std::iter::once(BASE_FILE.to_string()).chain(envs.iter().map(|e| format!("{e}.yaml")));
    for name in names {
        let path = dir.join(&name);
        if !path.exists() {
            continue;
        }
        let text = spec::read_file(&path).map_err(|e| match e {
            LoadError::Read { source, .. } => io(source),
            other => io(std::io::Error::other(other.to_string())),
        })?;
        snapshot.files.insert(name, (path.display().to_string(), text));
    }
    let revision = dir.join(REVISION_FILE);
    if revision.exists() {
        let text = spec::read_file(&revision).map_err(|e| io(std::io::Error::other(e.to_string())))?.map_err(|e| e.message);
        let revision = manifest(&revision.display().to_string(), text)?;
        // Only the files read are checked: the base and the environments asked for.
        let read = |name: &str| name == BASE_FILE || envs.iter().any(|e| name == format!("{e}.yaml"));
        check_whole(&revision, &snapshot.files, read).map_err(|detail| SourceError::Incomplete { url: dir.display().to_string(), detail })?;
        snapshot.label = Some(revision.label);
    }
    Ok(snapshot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_name_a_bucket() {
        assert_eq!(Location::parse(Path::new("specs")).ok(), Some(Location::Dir("specs".into())));
        assert_eq!(Location::parse(Path::new("s3://sentry-specs/prod/")).ok(), Some(Location::S3 { bucket: "sentry-specs".into(), prefix: "prod/".into() }));
        assert_eq!(Location::parse(Path::new("s3://sentry-specs/prod")).ok(), Some(Location::S3 { bucket: "sentry-specs".into(), prefix: "prod/".into() }));
        assert_eq!(Location::parse(Path::new("s3://sentry-specs")).ok(), Some(Location::S3 { bucket: "sentry-specs".into(), prefix: String::new() }));
        for bad in ["s3://", "s3:///prefix/", "s3://Bad_Bucket/", "s3://ab/", "s3://bucket/../x/"] {
            let e = Location::parse(Path::new(bad)).map_err(|e| e.to_string());
            assert!(e.as_ref().is_err_and(|m| m.contains("s3://bucket/prefix/")), "{bad}: {e:?}");
        }
    }

    use aws_sdk_s3::operation::get_object::GetObjectOutput;
    use aws_sdk_s3::operation::list_objects_v2::{ListObjectsV2Error, ListObjectsV2Output};
    use aws_sdk_s3::types::Object as Listed;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use aws_smithy_types::error::ErrorMetadata;

    fn s3_source(client: aws_sdk_s3::Client) -> Source {
        Source {
            location: Location::S3 { bucket: "specs-bucket".into(), prefix: "specs/".into() },
            s3: Some(client),
            objects: Default::default(),
            region: "us-east-1".into(),
        }
    }

    // The emulator does not enforce bucket policies, so a refusal is covered with mocks.
    #[tokio::test]
    async fn a_refused_listing_says_what_permission_is_missing() {
        let refuse = mock!(aws_sdk_s3::Client::list_objects_v2)
            .then_error(|| ListObjectsV2Error::generic(ErrorMetadata::builder().code("AccessDenied").message("Access Denied").build()));
        let source = s3_source(mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&refuse]));
        let e = source.snapshot(&[]).await.map(|_| ()).map_err(|e| e.to_string());
        assert!(
            e.as_ref().is_err_and(|m| m.starts_with("reading the specs in s3://specs-bucket/specs/ was refused")
                && m.contains("s3:ListBucket")
                && m.contains("s3:GetObject")),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn a_bucket_in_another_region_says_so() {
        let redirect = mock!(aws_sdk_s3::Client::list_objects_v2).then_error(|| {
            ListObjectsV2Error::generic(
                ErrorMetadata::builder()
                    .code("PermanentRedirect")
                    .message("The bucket you are attempting to access must be addressed using the specified endpoint")
                    .build(),
            )
        });
        let source = s3_source(mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&redirect]));
        let e = source.snapshot(&[]).await.map(|_| ()).map_err(|e| e.to_string());
        assert!(e.as_ref().is_err_and(|m| m.starts_with("the spec bucket specs-bucket is not in region us-east-1: give --region")), "{e:?}");
    }

    #[tokio::test]
    async fn unchanged_objects_are_not_read_again_and_oversized_ones_never() {
        let listing = mock!(aws_sdk_s3::Client::list_objects_v2).then_output(|| {
            let object = |key: &str, etag: &str, size: i64| Listed::builder().key(key).e_tag(etag).size(size).build();
            ListObjectsV2Output::builder()
                .contents(object("specs/dev.yaml", "\"e1\"", 20))
                .contents(object("specs/huge.yaml", "\"e2\"", 5 * 1024 * 1024))
                .contents(object("specs/nested/x.yaml", "\"e3\"", 20))
                .build()
        });
        let read = mock!(aws_sdk_s3::Client::get_object)
            .then_output(|| GetObjectOutput::builder().e_tag("\"e1\"").version_id("v1").body(b"messaging: {}\n".to_vec().into()).build());
        let source = s3_source(mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&listing, &read]));
        let first = source.snapshot(&[]).await.expect("snapshot");
        assert_eq!(read.num_calls(), 1, "dev.yaml only: the oversized file is refused from its listed size, nested keys ignored");
        assert_eq!(first.versions.get("specs/dev.yaml").map(String::as_str), Some("v1"));
        assert_eq!(first.environments(), ["dev", "huge"]);
        let huge = first.load("huge").map(|_| ()).map_err(|e| e.to_string());
        assert!(huge.is_err_and(|m| m.contains("s3://specs-bucket/specs/huge.yaml:1:1: file is 5242880 bytes")), "located in S3");
        source.snapshot(&[]).await.expect("again");
        assert_eq!((listing.num_calls(), read.num_calls()), (2, 1), "listed again, nothing read again");
    }

    #[test]
    fn revision_files_hold_a_clean_label_and_maybe_a_manifest() {
        assert_eq!(manifest("REVISION", Ok("4f2a9c1\n".into())).ok().map(|m| m.label), Some("4f2a9c1".to_string()));
        let bad = manifest("s3://b/p/REVISION", Ok("a\u{7}b".into())).map_err(|e| e.to_string());
        assert!(bad.is_err_and(|m| m.starts_with("s3://b/p/REVISION: ") && m.contains("control")));
        let bad = manifest("REVISION", Ok("c1\nnot a hash  dev.yaml\n".into())).map_err(|e| e.to_string());
        assert!(bad.is_err_and(|m| m.contains("line 2: expected `<sha256>  <file>.yaml`")));

        let (a, b) = ("messaging: {}\n", "messaging:\n  queues: {}\n");
        let listed = manifest("REVISION", Ok(format!("c2\n{}  base.yaml\n{} *dev.yaml\n", sha256(a), sha256(b)))).expect("manifest");
        let files = |set: &[(&str, &str)]| set.iter().map(|(n, t)| (n.to_string(), (n.to_string(), Ok(t.to_string())))).collect::<BTreeMap<_, _>>();
        assert_eq!(check_whole(&listed, &files(&[("base.yaml", a), ("dev.yaml", b)]), |_| true), Ok(()));
        assert_eq!(
            check_whole(&listed, &files(&[("base.yaml", a), ("dev.yaml", a)]), |_| true),
            Err("dev.yaml differs from the manifest".into()),
            "half published"
        );
        assert_eq!(check_whole(&listed, &files(&[("base.yaml", a)]), |_| true), Err("dev.yaml is missing".into()));
        assert_eq!(check_whole(&listed, &files(&[("base.yaml", a), ("dev.yaml", b), ("qa.yaml", a)]), |_| true), Err("qa.yaml is not in the manifest".into()));
    }
}
