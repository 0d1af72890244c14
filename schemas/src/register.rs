//! Registers every stream's schema under its subject, with BACKWARD_TRANSITIVE compatibility.
//!
//! Per subject: look the schema up and read the subject's compatibility level (both there:
//! nothing to do, so re-running writes nothing and costs two requests per subject); otherwise set
//! the compatibility level first — before the subject's first version, so no version is ever
//! accepted under a laxer rule — check compatibility against the subject's history, then
//! register. An incompatible schema fails with the subject and the offending fields, taken from
//! the registry's own diagnostics.
//!
//! [`ensure_registered`] is what every role runs at start-up: the same registration, retried
//! for a bounded time while the registry is unreachable or busy.

use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode, Url};
use serde_json::{Value as Json, json};

use crate::contract::local_schemas;
use crate::error::SchemaError;
use crate::topics::{Stream, Topics};

/// Compatibility level set on every subject: new readers must read every older version.
pub const COMPATIBILITY: &str = "BACKWARD_TRANSITIVE";

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// What happened to one subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationOutcome {
    /// A new version was registered.
    Registered,
    /// The subject already had exactly this schema.
    Unchanged,
}

/// One subject's registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectRegistration {
    /// Registry subject, `<topic>-value`.
    pub subject: String,
    /// The stream it belongs to, when registered through [`register_all`].
    pub stream: Option<Stream>,
    /// Id that records carry in their wire-format header.
    pub schema_id: u32,
    /// Version of the schema under the subject, when the registry reports it.
    pub version: Option<u32>,
    /// Whether anything was registered.
    pub outcome: RegistrationOutcome,
}

/// Every subject that [`register_all`] handled, in [`Stream::all`] order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RegistrationReport {
    /// One entry per subject.
    pub subjects: Vec<SubjectRegistration>,
}

impl RegistrationReport {
    /// How many subjects got a new version (0 when re-run on an up-to-date registry).
    pub fn newly_registered(&self) -> usize {
        self.subjects
            .iter()
            .filter(|s| s.outcome == RegistrationOutcome::Registered)
            .count()
    }
}

/// Why registration failed.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The registry URL does not parse.
    #[error("invalid schema registry URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// Parser message.
        reason: String,
    },
    /// The registry could not be reached.
    #[error("schema registry unreachable at {url}: {source}")]
    Unreachable {
        /// Request URL.
        url: String,
        /// Transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The schema would break readers of the subject's registered versions.
    #[error(
        "subject {subject}: schema is not {COMPATIBILITY} compatible with the registered versions; \
         incompatible field(s): {}; registry said: {}",
        fields.join(", "),
        messages.join(" | ")
    )]
    Incompatible {
        /// The subject that refused the schema.
        subject: String,
        /// Offending fields as dotted paths, e.g. `payload.CreateProduct.weight`.
        fields: Vec<String>,
        /// The registry's diagnostics, verbatim.
        messages: Vec<String>,
    },
    /// The registry answered an unexpected status.
    #[error("subject {subject}: registry answered {status} to {action}: {message}")]
    Registry {
        /// Subject being handled.
        subject: String,
        /// What was attempted.
        action: &'static str,
        /// HTTP status.
        status: u16,
        /// Response body.
        message: String,
    },
    /// The built-in schemas are broken.
    #[error(transparent)]
    Schema(#[from] SchemaError),
}

/// Registry calls give up after this long, so a hung registry surfaces as a retryable error.
const REGISTRY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// A registry that does not accept the connection this fast is as good as down.
const REGISTRY_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// A client of the registry's Confluent-compatible API.
#[derive(Debug, Clone)]
pub struct Registry {
    client: Client,
    base: Url,
}

impl Registry {
    /// A client for the Confluent API base URL, e.g. `http://127.0.0.1:8081/apis/ccompat/v7`.
    pub fn new(registry_url: &str) -> Result<Self, RegisterError> {
        let invalid = |reason: String| RegisterError::InvalidUrl {
            url: registry_url.to_owned(),
            reason,
        };
        let base =
            Url::parse(registry_url.trim_end_matches('/')).map_err(|e| invalid(e.to_string()))?;
        if base.cannot_be_a_base() {
            return Err(invalid("not a base URL".to_owned()));
        }
        let client = Client::builder()
            .timeout(REGISTRY_TIMEOUT)
            .connect_timeout(REGISTRY_CONNECT_TIMEOUT)
            .build()
            .map_err(|e| invalid(e.to_string()))?;
        Ok(Self { client, base })
    }

    /// The Confluent API base URL.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The HTTP client (pooled connections, bounded calls), for the codec's lookups.
    pub(crate) fn http(&self) -> &Client {
        &self.client
    }

    /// `base/segment/...`, each segment escaped.
    pub(crate) fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        url: &Url,
    ) -> Result<(StatusCode, Json), RegisterError> {
        let response = request
            .header(reqwest::header::ACCEPT, CONTENT_TYPE)
            .send()
            .await
            .map_err(|source| RegisterError::Unreachable {
                url: url.to_string(),
                source,
            })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|source| RegisterError::Unreachable {
                url: url.to_string(),
                source,
            })?;
        let body = serde_json::from_str(&text).unwrap_or(Json::String(text));
        Ok((status, body))
    }

    async fn call(
        &self,
        method: reqwest::Method,
        segments: &[&str],
        query: Option<(&str, &str)>,
        body: Option<&Json>,
    ) -> Result<(StatusCode, Json), RegisterError> {
        let mut url = self.url(segments);
        if let Some((k, v)) = query {
            url.query_pairs_mut().append_pair(k, v);
        }
        let mut request = self.client.request(method, url.clone());
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
                .body(body.to_string());
        }
        self.send(request, &url).await
    }

    /// Registers `schema_json` under `subject` (idempotent), refusing incompatible changes.
    pub async fn register(
        &self,
        subject: &str,
        schema_json: &str,
    ) -> Result<SubjectRegistration, RegisterError> {
        let unexpected = |action, status: StatusCode, body: &Json| RegisterError::Registry {
            subject: subject.to_owned(),
            action,
            status: status.as_u16(),
            message: message_of(body),
        };
        let schema_body = json!({ "schema": schema_json, "schemaType": "AVRO" });

        let existing = self.lookup(subject, &schema_body).await?;
        if let Some((schema_id, version)) = existing
            && self.compatibility(subject).await?.as_deref() == Some(COMPATIBILITY)
        {
            return Ok(SubjectRegistration {
                subject: subject.to_owned(),
                stream: None,
                schema_id,
                version,
                outcome: RegistrationOutcome::Unchanged,
            });
        }

        self.set_compatibility(subject).await?;
        if let Some((schema_id, version)) = existing {
            return Ok(SubjectRegistration {
                subject: subject.to_owned(),
                stream: None,
                schema_id,
                version,
                outcome: RegistrationOutcome::Unchanged,
            });
        }

        let (status, body) = self
            .call(
                reqwest::Method::POST,
                &["compatibility", "subjects", subject, "versions", "latest"],
                Some(("verbose", "true")),
                Some(&schema_body),
            )
            .await?;
        let compatible = match status {
            // No version yet: anything is compatible with an empty history.
            StatusCode::NOT_FOUND => true,
            s if s.is_success() => body["is_compatible"].as_bool().unwrap_or(false),
            s => return Err(unexpected("check compatibility", s, &body)),
        };
        if !compatible {
            let mut messages = strings(&body["messages"]);
            return Err(self
                .incompatible(subject, schema_json, &schema_body, &mut messages)
                .await);
        }

        let (status, body) = self
            .call(
                reqwest::Method::POST,
                &["subjects", subject, "versions"],
                None,
                Some(&schema_body),
            )
            .await?;
        if status == StatusCode::CONFLICT {
            // Roles starting together register the same schema at the same moment; the
            // registry may refuse the loser's creation although the schema is now there.
            if let Some((schema_id, version)) = self.lookup(subject, &schema_body).await? {
                return Ok(SubjectRegistration {
                    subject: subject.to_owned(),
                    stream: None,
                    schema_id,
                    version,
                    outcome: RegistrationOutcome::Unchanged,
                });
            }
            let fields = incompatible_fields(&[message_of(&body)], schema_json, None);
            return Err(RegisterError::Incompatible {
                subject: subject.to_owned(),
                fields,
                messages: vec![message_of(&body)],
            });
        }
        if !status.is_success() {
            return Err(unexpected("register", status, &body));
        }
        let id = body["id"]
            .as_u64()
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| unexpected("register (no id in answer)", status, &body))?;
        let version = self
            .lookup(subject, &schema_body)
            .await?
            .and_then(|(_, v)| v);
        Ok(SubjectRegistration {
            subject: subject.to_owned(),
            stream: None,
            schema_id: id,
            version,
            outcome: RegistrationOutcome::Registered,
        })
    }

    /// Sets [`COMPATIBILITY`] on `subject`; the registry accepts it before the subject has any
    /// version, which is the point: the rule guards the very first registration too.
    pub async fn set_compatibility(&self, subject: &str) -> Result<(), RegisterError> {
        let mut attempt = 0;
        loop {
            let (status, body) = self
                .call(
                    reqwest::Method::PUT,
                    &["config", subject],
                    None,
                    Some(&json!({ "compatibility": COMPATIBILITY })),
                )
                .await?;
            if status.is_success() {
                return Ok(());
            }
            // Apicurio answers 409 ("a rule named 'COMPATIBILITY' already exists") when another
            // process created the subject's rule at the same moment: that rule may be ours.
            if status == StatusCode::CONFLICT {
                if self.compatibility(subject).await?.as_deref() == Some(COMPATIBILITY) {
                    return Ok(());
                }
                if attempt < 3 {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                    continue;
                }
            }
            return Err(RegisterError::Registry {
                subject: subject.to_owned(),
                action: "set compatibility",
                status: status.as_u16(),
                message: message_of(&body),
            });
        }
    }

    /// The compatibility level the registry applies to `subject` (Apicurio answers the
    /// registry-wide default for a subject without its own); `None` when it reports none.
    pub async fn compatibility(&self, subject: &str) -> Result<Option<String>, RegisterError> {
        let (status, body) = self
            .call(reqwest::Method::GET, &["config", subject], None, None)
            .await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(RegisterError::Registry {
                subject: subject.to_owned(),
                action: "read compatibility",
                status: status.as_u16(),
                message: message_of(&body),
            });
        }
        Ok(body["compatibilityLevel"]
            .as_str()
            .or_else(|| body["compatibility"].as_str())
            .map(str::to_owned))
    }

    /// The id under which exactly `schema_json` is registered under `subject`, without
    /// registering anything; `None` when the subject does not hold it.
    pub async fn lookup_id(
        &self,
        subject: &str,
        schema_json: &str,
    ) -> Result<Option<u32>, RegisterError> {
        let schema_body = json!({ "schema": schema_json, "schemaType": "AVRO" });
        Ok(self.lookup(subject, &schema_body).await?.map(|(id, _)| id))
    }

    /// The id and version of exactly this schema under the subject, if registered there.
    async fn lookup(
        &self,
        subject: &str,
        schema_body: &Json,
    ) -> Result<Option<(u32, Option<u32>)>, RegisterError> {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                &["subjects", subject],
                None,
                Some(schema_body),
            )
            .await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(RegisterError::Registry {
                subject: subject.to_owned(),
                action: "look up schema",
                status: status.as_u16(),
                message: message_of(&body),
            });
        }
        let id = body["id"].as_u64().and_then(|id| u32::try_from(id).ok());
        let version = body["version"].as_u64().and_then(|v| u32::try_from(v).ok());
        Ok(id.map(|id| (id, version)))
    }

    /// Gathers the registry's diagnostics for an incompatible schema.
    ///
    /// Confluent lists them in the verbose compatibility answer; Apicurio's ccompat API answers
    /// only `is_compatible: false` there and explains itself when the registration is refused
    /// (409, "list of diff types: [... at /fields/1]"). The compatibility rule set above makes
    /// that refusal certain, so asking is safe.
    async fn incompatible(
        &self,
        subject: &str,
        schema_json: &str,
        schema_body: &Json,
        messages: &mut Vec<String>,
    ) -> RegisterError {
        if messages.is_empty()
            && let Ok((status, body)) = self
                .call(
                    reqwest::Method::POST,
                    &["subjects", subject, "versions"],
                    None,
                    Some(schema_body),
                )
                .await
            && !status.is_success()
        {
            messages.push(message_of(&body));
        }
        let latest = match self
            .call(
                reqwest::Method::GET,
                &["subjects", subject, "versions", "latest"],
                None,
                None,
            )
            .await
        {
            Ok((status, body)) if status.is_success() => body["schema"]
                .as_str()
                .and_then(|s| serde_json::from_str::<Json>(s).ok()),
            _ => None,
        };
        RegisterError::Incompatible {
            subject: subject.to_owned(),
            fields: incompatible_fields(messages, schema_json, latest.as_ref()),
            messages: std::mem::take(messages),
        }
    }

    /// Registers every stream's schema under its subject for `topics`.
    pub async fn register_all(&self, topics: &Topics) -> Result<RegistrationReport, RegisterError> {
        let mut report = RegistrationReport::default();
        for local in local_schemas()? {
            let subject = topics.subject(local.stream);
            let mut registration = self.register(&subject, &local.json).await?;
            registration.stream = Some(local.stream);
            report.subjects.push(registration);
        }
        Ok(report)
    }
}

/// Registers every schema of this build under `topics`' subjects; see [`Registry::register_all`].
pub async fn register_all(
    registry_url: &str,
    topics: &Topics,
) -> Result<RegistrationReport, RegisterError> {
    Registry::new(registry_url)?.register_all(topics).await
}

impl RegisterError {
    /// True when the same registration may succeed later (registry down, starting or
    /// overloaded); everything else needs a person (bad URL, incompatible schema).
    pub fn is_transient(&self) -> bool {
        match self {
            RegisterError::Unreachable { .. } => true,
            // 409: another process changed the subject at the same moment; a retry sees it.
            RegisterError::Registry { status, .. } => {
                *status >= 500 || *status == 429 || *status == 409
            }
            RegisterError::InvalidUrl { .. }
            | RegisterError::Incompatible { .. }
            | RegisterError::Schema(_) => false,
        }
    }
}

/// Start-up registration of the whole contract: [`register_all`], retried while the failure is
/// transient, for at most `within`. Cheap when the registry is up to date (no writes).
pub async fn ensure_registered(
    registry_url: &str,
    topics: &Topics,
    within: Duration,
) -> Result<RegistrationReport, RegisterError> {
    let registry = Registry::new(registry_url)?;
    let deadline = Instant::now() + within;
    let mut pause = Duration::from_millis(200);
    loop {
        match registry.register_all(topics).await {
            Ok(report) => return Ok(report),
            Err(e) if e.is_transient() && Instant::now() + pause < deadline => {
                tracing::warn!(error = %e, "schema registry not ready; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}

fn message_of(body: &Json) -> String {
    match body.get("message").and_then(Json::as_str) {
        Some(m) => m.to_owned(),
        None => body.to_string(),
    }
}

fn strings(value: &Json) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// JSON-pointer paths (`/fields/1/type/0`) mentioned in registry messages.
fn paths_in(message: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = message;
    while let Some(start) = rest.find("/fields") {
        let tail = rest.get(start..).unwrap_or_default();
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, ',' | ']' | '\'' | '"' | ')'))
            .unwrap_or(tail.len());
        out.push(tail.get(..end).unwrap_or_default().to_owned());
        rest = tail.get(end..).unwrap_or_default();
    }
    out
}

/// Full name of a named schema node, given the namespace it inherits.
fn full_name(node: &Json, namespace: &str) -> Option<String> {
    let name = node.get("name")?.as_str()?;
    if name.contains('.') {
        return Some(name.to_owned());
    }
    let ns = node
        .get("namespace")
        .and_then(Json::as_str)
        .unwrap_or(namespace);
    Some(if ns.is_empty() {
        name.to_owned()
    } else {
        format!("{ns}.{name}")
    })
}

/// Finds the record with `name` anywhere in a schema.
fn find_record<'a>(node: &'a Json, name: &str, namespace: &str) -> Option<&'a Json> {
    match node {
        Json::Object(obj) => {
            let ns = obj
                .get("namespace")
                .and_then(Json::as_str)
                .unwrap_or(namespace);
            if obj.get("type").and_then(Json::as_str) == Some("record")
                && full_name(node, namespace).as_deref() == Some(name)
            {
                return Some(node);
            }
            obj.values().find_map(|v| find_record(v, name, ns))
        }
        Json::Array(items) => items.iter().find_map(|v| find_record(v, name, namespace)),
        _ => None,
    }
}

/// Turns a pointer into the new schema into a dotted field path, plus the record it ends in.
fn describe_path(schema: &Json, path: &str) -> (String, Option<(String, Json)>) {
    let mut names: Vec<String> = Vec::new();
    let mut node = schema;
    let mut namespace = schema
        .get("namespace")
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_owned();
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        let next = match (segment, node) {
            (key, Json::Object(obj)) => obj.get(key),
            (index, Json::Array(items)) => index.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
        let Some(next) = next else { break };
        if let Some(ns) = node.get("namespace").and_then(Json::as_str) {
            namespace = ns.to_owned();
        }
        if let (Json::Array(_), Some(name)) = (node, next.get("name").and_then(Json::as_str)) {
            // An array step is either a field or a union branch; both are named by their name.
            names.push(name.to_owned());
        }
        node = next;
    }
    let record = if node.get("type").and_then(Json::as_str) == Some("record") {
        full_name(node, &namespace).map(|n| (n, node.clone()))
    } else {
        None
    };
    (names.join("."), record)
}

/// The offending fields: where the registry pointed, refined to the fields a record gained
/// without a default when the pointer ends at a record (e.g. a union branch).
fn incompatible_fields(
    messages: &[String],
    schema_json: &str,
    latest: Option<&Json>,
) -> Vec<String> {
    let Ok(schema) = serde_json::from_str::<Json>(schema_json) else {
        return Vec::new();
    };
    let mut fields = Vec::new();
    for path in messages.iter().flat_map(|m| paths_in(m)) {
        let (dotted, record) = describe_path(&schema, &path);
        let mut refined = false;
        if let (Some((name, new_record)), Some(old)) = (record, latest)
            && let Some(old_record) = find_record(old, &name, "")
        {
            let old_fields: Vec<&str> = old_record["fields"]
                .as_array()
                .map(|f| f.iter().filter_map(|f| f["name"].as_str()).collect())
                .unwrap_or_default();
            for field in new_record["fields"].as_array().into_iter().flatten() {
                let name = field["name"].as_str().unwrap_or_default();
                if !old_fields.contains(&name) && field.get("default").is_none() {
                    fields.push(format!("{dotted}.{name}"));
                    refined = true;
                }
            }
        }
        if !refined && !dotted.is_empty() {
            fields.push(dotted);
        }
    }
    fields.dedup();
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = r#"{"type":"record","name":"E","namespace":"x","fields":[
        {"name":"id","type":"string"},
        {"name":"payload","type":[{"type":"record","name":"P","fields":[{"name":"a","type":"long"}]}]}]}"#;
    const NEW: &str = r#"{"type":"record","name":"E","namespace":"x","fields":[
        {"name":"id","type":"string"},
        {"name":"payload","type":[{"type":"record","name":"P","fields":[{"name":"a","type":"long"},
            {"name":"weight","type":"long"}]}]}]}"#;

    #[test]
    fn apicurio_top_level_message_names_the_field() {
        let msg = "Incompatible artifact: s [AVRO], num of incompatible diffs: {1}, list of diff types: [b at /fields/1]";
        let new = r#"{"type":"record","name":"A","fields":[{"name":"a","type":"long"},{"name":"b","type":"string"}]}"#;
        assert_eq!(incompatible_fields(&[msg.to_owned()], new, None), vec!["b"]);
    }

    #[test]
    fn union_branch_message_is_refined_to_the_new_field() {
        let msg =
            "list of diff types: [reader union lacking writer type: RECORD at /fields/1/type/0]";
        let old: Json = serde_json::from_str(OLD).expect("json");
        assert_eq!(
            incompatible_fields(&[msg.to_owned()], NEW, Some(&old)),
            vec!["payload.P.weight"]
        );
        assert_eq!(
            incompatible_fields(&[msg.to_owned()], NEW, None),
            vec!["payload.P"]
        );
    }

    #[test]
    fn confluent_verbose_messages_are_understood() {
        let msg = "{errorType:'READER_FIELD_MISSING_DEFAULT', description:'The field 'b' at path '/fields/1' in the new schema has no default value', additionalInfo:'b'}";
        let new = r#"{"type":"record","name":"A","fields":[{"name":"a","type":"long"},{"name":"b","type":"string"}]}"#;
        assert_eq!(incompatible_fields(&[msg.to_owned()], new, None), vec!["b"]);
    }
}
