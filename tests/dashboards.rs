//! Checks what `grafana/` ships: a lint of the dashboard JSON (data source variable,
//! descriptions, units, `$__rate_interval`, `le` kept by every `histogram_quantile`), `promtool`
//! on the alert rules and their unit tests, and every dashboard variable and panel query run
//! against a real Prometheus scraping a daemon under a short load, which must answer with data.

use crate::common;

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::daemon::{Daemon, pipeline_yaml};
use common::fake_llm::{Behaviour, start_fake};
use common::{fixture, free_port, http_client};
use reqwest::{StatusCode, Url};
use serde_json::{Value, json};

/// Dashboards that must exist; any other JSON file beside them is checked too.
const DASHBOARD_FILES: &[&str] = &["overview.json", "stages.json"];
/// The data source every panel and target must use: the dashboard's own variable.
const DATASOURCE_UID: &str = "${datasource}";
/// Variables Grafana defines itself, with the values the live test gives them.
const BUILTIN_VARIABLES: &[(&str, &str)] = &[
    ("__rate_interval", "1m"),
    ("__interval", "15s"),
    ("__range", "5m"),
];
/// Functions whose range must be `$__rate_interval` so that a range always holds enough samples
/// whatever the scrape interval and zoom.
const RANGE_FUNCTIONS: &[&str] = &["rate", "irate", "increase"];

fn grafana_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("grafana")
}

/// Every dashboard file (`grafana/dashboards/*.json`) with its parsed JSON, by name.
fn dashboards() -> Vec<(String, Value)> {
    let dir = grafana_dir().join("dashboards");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".json"))
        .collect();
    names.sort();
    for expected in DASHBOARD_FILES {
        assert!(
            names.iter().any(|n| n == expected),
            "no {expected} in {}",
            dir.display()
        );
    }
    names
        .into_iter()
        .map(|name| {
            let path = dir.join(&name);
            let text = std::fs::read_to_string(&path).unwrap();
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: invalid JSON: {e}", path.display()));
            (name, json)
        })
        .collect()
}

/// Every panel of a dashboard, including those nested in (collapsed) rows.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: Option<&'a Value>, out: &mut Vec<&'a Value>) {
        for panel in list.and_then(Value::as_array).into_iter().flatten() {
            out.push(panel);
            walk(panel.get("panels"), out);
        }
    }
    let mut out = Vec::new();
    walk(dashboard.get("panels"), &mut out);
    out
}

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn panel_name(panel: &Value) -> String {
    format!("panel {:?}", text(panel, "/title"))
}

/// The template variables of a dashboard, in order.
fn variables(dashboard: &Value) -> Vec<&Value> {
    dashboard
        .pointer("/templating/list")
        .and_then(Value::as_array)
        .map(|list| list.iter().collect())
        .unwrap_or_default()
}

/// A query variable's query: Grafana stores either a string or an object holding it.
fn variable_query(variable: &Value) -> &str {
    match variable.get("query") {
        Some(Value::String(query)) => query,
        Some(query) => text(query, "/query"),
        None => "",
    }
}

/// Whether a variable can hold several values (Grafana then substitutes a regex).
fn is_multi_value(variable: &Value) -> bool {
    variable.get("multi") == Some(&Value::Bool(true))
        || variable.get("includeAll") == Some(&Value::Bool(true))
}

/// The template variables `template` refers to (`$name`, `${name}`, `${name:format}`), with the
/// byte range each reference takes.
fn variable_refs(template: &str) -> Vec<(Range<usize>, String)> {
    let bytes = template.as_bytes();
    let is_name = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut refs = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        if bytes.get(i + 1) == Some(&b'{')
            && let Some(close) = template[i..].find('}')
        {
            let inner = &template[i + 2..i + close];
            let name = inner.split(':').next().unwrap_or("");
            refs.push((i..i + close + 1, name.to_string()));
            i += close + 1;
            continue;
        }
        let end = (i + 1..bytes.len())
            .find(|&j| !is_name(bytes[j]))
            .unwrap_or(bytes.len());
        if end > i + 1 {
            refs.push((i..end, template[i + 1..end].to_string()));
        }
        i = end.max(i + 1);
    }
    refs
}

/// `expr` with the inside of every string literal blanked out, so that label values (routes
/// hold braces) cannot be mistaken for syntax; byte offsets are unchanged.
fn blank_strings(expr: &str) -> String {
    let mut out = Vec::with_capacity(expr.len());
    let mut quote = None;
    let mut escaped = false;
    for &b in expr.as_bytes() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                    out.push(b'_');
                } else if b == b'\\' {
                    escaped = true;
                    out.push(b'_');
                } else if b == q {
                    quote = None;
                    out.push(b);
                } else {
                    out.push(if b.is_ascii() { b'_' } else { b });
                }
            }
            None => {
                if b == b'"' || b == b'\'' || b == b'`' {
                    quote = Some(b);
                }
                out.push(b);
            }
        }
    }
    String::from_utf8(out).expect("only ASCII bytes were replaced")
}

/// For every call `word(` in `expr` (whole words only), the offset just after its `(`.
fn calls<'a>(expr: &'a str, word: &'a str) -> impl Iterator<Item = usize> + 'a {
    let bytes = expr.as_bytes();
    expr.match_indices(word).filter_map(move |(start, _)| {
        let before_ok = start == 0 || {
            let b = bytes[start - 1];
            !(b.is_ascii_alphanumeric() || b == b'_')
        };
        let rest = &expr[start + word.len()..];
        let trimmed = rest.trim_start();
        (before_ok && trimmed.starts_with('('))
            .then(|| start + word.len() + (rest.len() - trimmed.len()) + 1)
    })
}

/// The text between the `(` that ends just before `open` and its matching `)`.
fn argument(expr: &str, open: usize) -> &str {
    let mut depth = 1;
    for (i, b) in expr.as_bytes()[open..].iter().enumerate() {
        match b {
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return &expr[open..open + i];
                }
            }
            _ => {}
        }
    }
    &expr[open..]
}

/// The label lists of every `keyword (...)` grouping clause in `expr`.
fn grouping_labels(expr: &str, keyword: &str) -> Vec<Vec<String>> {
    calls(expr, keyword)
        .map(|open| {
            argument(expr, open)
                .split(',')
                .map(|label| label.trim().to_string())
                .collect()
        })
        .collect()
}

/// Range selectors (`[...]`) in `expr`.
fn ranges(expr: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find(']') else {
            break;
        };
        out.push(&rest[open..open + close + 1]);
        rest = &rest[open + close + 1..];
    }
    out
}

/// What is wrong with one PromQL expression of a dashboard: ranges not `$__rate_interval`,
/// `histogram_quantile` over an aggregation that drops `le`, variables that do not exist, and
/// multi-value variables used where Grafana's regex substitution would not match.
fn lint_expr(expr: &str, variables: &[&Value]) -> Vec<String> {
    let mut findings = Vec::new();
    let syntax = blank_strings(expr);
    for function in RANGE_FUNCTIONS {
        for open in calls(&syntax, function) {
            let arg = argument(&syntax, open);
            let found = ranges(arg);
            if found.is_empty() || found.iter().any(|r| *r != "[$__rate_interval]") {
                findings.push(format!(
                    "{function}() must use [$__rate_interval], has {found:?}: {expr}"
                ));
            }
        }
    }
    for open in calls(&syntax, "histogram_quantile") {
        let arg = argument(&syntax, open);
        let by = grouping_labels(arg, "by");
        if by.is_empty() {
            findings.push(format!(
                "histogram_quantile must aggregate its buckets `by (le, ...)`: {expr}"
            ));
        }
        for labels in by.iter().filter(|labels| !labels.iter().any(|l| l == "le")) {
            findings.push(format!(
                "histogram_quantile over `by ({})` drops le: {expr}",
                labels.join(", ")
            ));
        }
        for labels in grouping_labels(arg, "without") {
            if labels.iter().any(|l| l == "le") {
                findings.push(format!("histogram_quantile over `without (le)`: {expr}"));
            }
        }
    }
    for (range, name) in variable_refs(expr) {
        if BUILTIN_VARIABLES
            .iter()
            .any(|(builtin, _)| *builtin == name)
        {
            continue;
        }
        let Some(variable) = variables.iter().find(|v| text(v, "/name") == name) else {
            findings.push(format!("unknown variable ${name}: {expr}"));
            continue;
        };
        if is_multi_value(variable) && !expr[..range.start].ends_with("=~\"") {
            findings.push(format!(
                "multi-value variable ${name} must follow =~\" (Grafana substitutes a regex): \
                 {expr}"
            ));
        }
    }
    findings
}

/// Everything wrong with one dashboard, each finding prefixed with `name`.
fn lint_dashboard(name: &str, dashboard: &Value) -> Vec<String> {
    let mut findings = Vec::new();
    if text(dashboard, "/uid").is_empty() {
        findings.push("no uid".to_string());
    }
    if dashboard
        .get("schemaVersion")
        .and_then(Value::as_u64)
        .is_none_or(|v| v < 36)
    {
        findings.push("schemaVersion missing or older than 36 (Grafana 9)".to_string());
    }
    let variables = variables(dashboard);
    let has_datasource_variable = variables.iter().any(|v| {
        text(v, "/name") == "datasource"
            && text(v, "/type") == "datasource"
            && text(v, "/query") == "prometheus"
    });
    if !has_datasource_variable {
        findings
            .push("no `datasource` variable of type datasource with query prometheus".to_string());
    }
    for variable in &variables {
        if text(variable, "/type") != "query" {
            continue;
        }
        let var_name = text(variable, "/name");
        if text(variable, "/datasource/uid") != DATASOURCE_UID {
            findings.push(format!(
                "variable {var_name}: data source is not {DATASOURCE_UID}"
            ));
        }
        let query = variable_query(variable);
        if !query.starts_with("label_values(") {
            findings.push(format!(
                "variable {var_name}: only label_values() queries are supported, got {query:?}"
            ));
        }
        findings.extend(
            lint_expr(query, &variables)
                .into_iter()
                .map(|f| format!("variable {var_name}: {f}")),
        );
    }
    let mut ids = HashSet::new();
    for panel in panels(dashboard) {
        let panel_label = panel_name(panel);
        if let Some(id) = panel.get("id").and_then(Value::as_u64)
            && !ids.insert(id)
        {
            findings.push(format!("{panel_label}: id {id} used twice"));
        }
        if text(panel, "/type") == "row" {
            continue;
        }
        if text(panel, "/description").trim().is_empty() {
            findings.push(format!("{panel_label}: no description"));
        }
        if text(panel, "/fieldConfig/defaults/unit").is_empty() {
            findings.push(format!(
                "{panel_label}: no unit (fieldConfig.defaults.unit)"
            ));
        }
        if text(panel, "/datasource/uid") != DATASOURCE_UID {
            findings.push(format!(
                "{panel_label}: data source is not {DATASOURCE_UID}"
            ));
        }
        let targets = panel
            .get("targets")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if targets.is_empty() {
            findings.push(format!("{panel_label}: no targets"));
        }
        let mut ref_ids = HashSet::new();
        for target in &targets {
            let ref_id = text(target, "/refId");
            if !ref_ids.insert(ref_id.to_string()) {
                findings.push(format!("{panel_label}: refId {ref_id:?} used twice"));
            }
            if text(target, "/datasource/uid") != DATASOURCE_UID {
                findings.push(format!(
                    "{panel_label} [{ref_id}]: data source is not {DATASOURCE_UID}"
                ));
            }
            let expr = text(target, "/expr");
            if expr.trim().is_empty() {
                findings.push(format!("{panel_label} [{ref_id}]: no expr"));
            }
            findings.extend(
                lint_expr(expr, &variables)
                    .into_iter()
                    .map(|f| format!("{panel_label} [{ref_id}]: {f}")),
            );
        }
    }
    findings
        .into_iter()
        .map(|f| format!("{name}: {f}"))
        .collect()
}

#[test]
fn dashboards_pass_the_lint() {
    let dashboards = dashboards();
    let mut uids = HashSet::new();
    let mut findings = Vec::new();
    for (name, dashboard) in &dashboards {
        if !uids.insert(text(dashboard, "/uid").to_string()) {
            findings.push(format!("{name}: uid shared with another dashboard"));
        }
        let panel_count = panels(dashboard)
            .iter()
            .filter(|p| text(p, "/type") != "row")
            .count();
        assert!(panel_count >= 8, "{name}: only {panel_count} panels");
        findings.extend(lint_dashboard(name, dashboard));
    }
    assert!(
        findings.is_empty(),
        "{} dashboard findings:\n{}",
        findings.len(),
        findings.join("\n")
    );
}

#[test]
fn the_lint_reports_every_kind_of_fault() {
    let bad = json!({
        "uid": "bad",
        "schemaVersion": 39,
        "templating": {"list": [
            {"name": "pipeline", "type": "query", "multi": true,
             "datasource": {"type": "prometheus", "uid": "prom"},
             "query": "label_values(pagemill_stage_queue_capacity, pipeline)"}
        ]},
        "panels": [
            {"id": 1, "type": "row", "collapsed": true, "panels": [
                {"id": 2, "type": "timeseries", "title": "nested",
                 "datasource": {"uid": "${datasource}"},
                 "targets": [{"refId": "A", "datasource": {"uid": "${datasource}"},
                              "expr": "rate(pagemill_pages_total{pipeline=\"$pipeline\"}[5m])"}]}
            ]},
            {"id": 3, "type": "timeseries", "title": "latency", "description": "d",
             "fieldConfig": {"defaults": {"unit": "s"}},
             "datasource": {"uid": "${datasource}"},
             "targets": [{"refId": "A", "datasource": {"uid": "${datasource}"},
                          "expr": "histogram_quantile(0.9, sum by (pipeline) (rate(x_bucket{route=\"/a/{b}\"}[$__rate_interval]))) + $missing"}]}
        ]
    });
    let findings = lint_dashboard("bad.json", &bad).join("\n");
    for expected in [
        "no `datasource` variable",
        "variable pipeline: data source is not",
        "panel \"nested\": no description",
        "panel \"nested\": no unit",
        "rate() must use [$__rate_interval]",
        "multi-value variable $pipeline must follow =~",
        "drops le",
        "unknown variable $missing",
    ] {
        assert!(
            findings.contains(expected),
            "the lint missed {expected:?}; it found:\n{findings}"
        );
    }
    assert!(
        !findings.contains("panel \"latency\": no"),
        "a complete panel was reported:\n{findings}"
    );
}

fn promtool(args: &[&str]) {
    let output = Command::new("promtool")
        .args(args)
        .current_dir(grafana_dir().join("alerts"))
        .output()
        .expect("promtool is installed by scripts/setup.sh");
    assert!(
        output.status.success(),
        "promtool {}:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn read_yaml(name: &str) -> Value {
    let path = grafana_dir().join("alerts").join(name);
    let yaml = std::fs::read_to_string(&path).unwrap();
    serde_saphyr::from_str(&yaml).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn alert_rules_pass_promtool_and_every_alert_is_tested_firing_and_quiet() {
    promtool(&["check", "rules", "pagemill.rules.yml"]);
    promtool(&["test", "rules", "pagemill.rules.test.yml"]);

    let rules = read_yaml("pagemill.rules.yml");
    let mut problems = Vec::new();
    let mut alerts = Vec::new();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let Some(alert) = rule["alert"].as_str() else {
                continue;
            };
            alerts.push(alert.to_string());
            for pointer in [
                "/labels/severity",
                "/annotations/summary",
                "/annotations/description",
            ] {
                if text(rule, pointer).is_empty() {
                    problems.push(format!("{alert}: no {pointer}"));
                }
            }
        }
    }
    let tests = read_yaml("pagemill.rules.test.yml");
    let (mut firing, mut quiet) = (HashSet::new(), HashSet::new());
    for test in tests["tests"].as_array().unwrap() {
        for case in test["alert_rule_test"].as_array().into_iter().flatten() {
            let alert = text(case, "/alertname").to_string();
            let expected = case["exp_alerts"].as_array().map_or(0, Vec::len);
            if expected > 0 {
                firing.insert(alert);
            } else {
                quiet.insert(alert);
            }
        }
    }
    for alert in &alerts {
        if !firing.contains(alert) {
            problems.push(format!("{alert}: no test where it fires"));
        }
        if !quiet.contains(alert) {
            problems.push(format!("{alert}: no test where it stays quiet"));
        }
    }
    assert!(alerts.len() >= 6, "only {} alerts", alerts.len());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A Prometheus server of its own, scraping one pagemill daemon every second and evaluating
/// the shipped alert rules; killed when dropped.
struct Prometheus {
    child: Child,
    base: String,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(target: &str, rules: &Path) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {rules}\n\
                 scrape_configs:\n  - job_name: pagemill\n    static_configs:\n      - targets: ['{target}']\n",
                rules = rules.display()
            ),
        )
        .unwrap();
        let log = File::create(dir.path().join("prometheus.log")).unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus is installed by scripts/setup.sh");
        Prometheus {
            child,
            base: format!("http://127.0.0.1:{port}"),
            dir,
            http: http_client(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(response) = self.http.get(format!("{}/-/ready", self.base)).send().await
                && response.status() == StatusCode::OK
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("prometheus did not become ready:\n{}", self.log());
    }

    /// GET an API path with query parameters; the JSON answer, whatever its status.
    async fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let mut url = Url::parse(&format!("{}{path}", self.base)).unwrap();
        for (key, value) in params {
            url.query_pairs_mut().append_pair(key, value);
        }
        let response = self.http.get(url).send().await.unwrap();
        response.json().await.unwrap()
    }

    /// The result vector of an instant query, or the error Prometheus gave.
    async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let answer = self.api("/api/v1/query", &[("query", expr)]).await;
        if answer["status"] != "success" {
            return Err(format!("{}: {}", answer["errorType"], answer["error"]));
        }
        Ok(answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// The values of `label` on the series `selector` matches (Grafana's `label_values`).
    async fn label_values(
        &self,
        selector: Option<&str>,
        label: &str,
    ) -> Result<Vec<String>, String> {
        let path = format!("/api/v1/label/{label}/values");
        let answer = match selector {
            Some(selector) => self.api(&path, &[("match[]", selector)]).await,
            None => self.api(&path, &[]).await,
        };
        if answer["status"] != "success" {
            return Err(format!("{}: {}", answer["errorType"], answer["error"]));
        }
        Ok(answer["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(String::from))
            .collect())
    }
}

/// `label_values(selector, label)` or `label_values(label)` split into its parts.
fn parse_label_values(query: &str) -> Option<(Option<&str>, &str)> {
    let inner = query.strip_prefix("label_values(")?.strip_suffix(')')?;
    let syntax = blank_strings(inner);
    let mut depth = 0;
    let mut split = None;
    for (i, b) in syntax.bytes().enumerate() {
        match b {
            b'{' | b'(' => depth += 1,
            b'}' | b')' => depth -= 1,
            b',' if depth == 0 => split = Some(i),
            _ => {}
        }
    }
    Some(match split {
        Some(i) => (Some(inner[..i].trim()), inner[i + 1..].trim()),
        None => (None, inner.trim()),
    })
}

/// A value made literal inside a PromQL regex string.
fn regex_literal(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if "\\.+*?()|[]{}^$".contains(c) {
                format!("\\\\{c}")
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// `template` with every variable replaced as Grafana does when all values are selected: a
/// multi-value variable becomes the regex `(a|b)`, a single value itself, built-ins fixed.
fn substitute(
    template: &str,
    values: &BTreeMap<String, Vec<String>>,
    variables: &[&Value],
) -> String {
    let mut out = String::new();
    let mut last = 0;
    for (range, name) in variable_refs(template) {
        out.push_str(&template[last..range.start]);
        last = range.end;
        if let Some((_, value)) = BUILTIN_VARIABLES.iter().find(|(b, _)| *b == name) {
            out.push_str(value);
            continue;
        }
        let chosen = values.get(&name).cloned().unwrap_or_default();
        let multi = variables
            .iter()
            .any(|v| text(v, "/name") == name && is_multi_value(v));
        if multi {
            let alternatives: Vec<String> = chosen.iter().map(|v| regex_literal(v)).collect();
            out.push_str(&format!("({})", alternatives.join("|")));
        } else {
            out.push_str(chosen.first().map(String::as_str).unwrap_or(""));
        }
    }
    out.push_str(&template[last..]);
    out
}

/// Polls `expr` until its first sample reaches `at_least`.
async fn wait_for_value(prometheus: &Prometheus, expr: &str, at_least: f64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let value = prometheus
            .query(expr)
            .await
            .ok()
            .and_then(|result| result.first().cloned())
            .and_then(|sample| {
                sample["value"][1]
                    .as_str()
                    .and_then(|v| v.parse::<f64>().ok())
            });
        if value.is_some_and(|v| v >= at_least) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{expr} stayed at {value:?}, below {at_least}:\n{}",
            prometheus.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Submits a body under a file name; the response.
async fn post_bytes(daemon: &Daemon, file_name: &str, body: Vec<u8>) -> reqwest::Response {
    daemon
        .http
        .post(daemon.url("/v1/pipelines/default/jobs"))
        .header("x-filename", file_name)
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Runs a short load with every outcome: documents that OCR, a PDF with a text layer, a PDF
/// that fails in a stage, bytes that are no document (415) and an empty body (400).
async fn apply_load(daemon: &Daemon) {
    let mut good = Vec::new();
    for _ in 0..3 {
        good.push(daemon.submit("default", &fixture("phototest.tif")).await);
    }
    good.push(daemon.submit("default", &fixture("tagged.pdf")).await);

    let mut broken_pdf = b"%PDF-1.7\n".to_vec();
    broken_pdf.extend((0..2048u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    let response = post_bytes(daemon, "broken.pdf", broken_pdf).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let broken: Value = response.json().await.unwrap();
    let broken_id = broken["id"].as_str().unwrap().to_string();

    let not_a_document: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(40_503).rotate_left(7) >> 3) as u8)
        .collect();
    let response = post_bytes(daemon, "noise.bin", not_a_document).await;
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let response = post_bytes(daemon, "empty.pdf", Vec::new()).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    for id in &good {
        let status = daemon.wait_final(id).await;
        assert_eq!(status["state"], "done", "{status}");
    }
    let status = daemon.wait_final(&broken_id).await;
    assert_eq!(status["state"], "failed", "{status}");

    // The LLM pipeline: one summary from the endpoint, one from the cache.
    for _ in 0..2 {
        let id = daemon.submit("llm", &fixture("phototest.tif")).await;
        let status = daemon.wait_final(&id).await;
        assert_eq!(status["state"], "done", "{status}");
    }
}

/// Every series name `pagemill_...` an expression mentions.
fn metric_names(expr: &str) -> Vec<String> {
    let syntax = blank_strings(expr);
    let bytes = syntax.as_bytes();
    syntax
        .match_indices("pagemill_")
        .filter(|(start, _)| {
            *start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_')
        })
        .map(|(start, _)| {
            let end = (start..bytes.len())
                .find(|&i| !(bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_'))
                .unwrap_or(bytes.len());
            syntax[start..end].to_string()
        })
        .collect()
}

/// The row of the overview dashboard that only cluster nodes feed.
const CLUSTER_ROW: &str = "Cluster";

/// The title of the row each panel sits in ("" above the first row), by panel: collapsed rows
/// hold their panels, open rows the panels that follow them.
fn rows_of(dashboard: &Value) -> Vec<(String, &Value)> {
    let mut out = Vec::new();
    let mut row = String::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        if text(panel, "/type") == "row" {
            row = text(panel, "/title").to_string();
            for inner in panel["panels"].as_array().into_iter().flatten() {
                out.push((row.clone(), inner));
            }
        } else {
            out.push((row.clone(), panel));
        }
    }
    out
}

/// Runs every dashboard variable, and every query of the panels in the rows `include` takes,
/// against `prometheus`; returns what answered with no data or an error, and how many
/// queries ran.
async fn query_failures(
    prometheus: &Prometheus,
    include: impl Fn(&str) -> bool,
) -> (Vec<String>, usize) {
    let mut failures = Vec::new();
    let mut checked = 0;
    for (name, dashboard) in dashboards() {
        let variables = variables(&dashboard);
        let mut values: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for variable in &variables {
            let var_name = text(variable, "/name").to_string();
            if text(variable, "/type") != "query" {
                continue;
            }
            let query = substitute(variable_query(variable), &values, &variables);
            checked += 1;
            let Some((selector, label)) = parse_label_values(&query) else {
                failures.push(format!("{name}: variable {var_name}: cannot run {query:?}"));
                continue;
            };
            match prometheus.label_values(selector, label).await {
                Ok(found) if !found.is_empty() => {
                    values.insert(var_name, found);
                }
                Ok(_) => failures.push(format!(
                    "{name}: variable {var_name}: no values for {query}"
                )),
                Err(e) => failures.push(format!("{name}: variable {var_name}: {query}: {e}")),
            }
        }
        for (row, panel) in rows_of(&dashboard) {
            if !include(&row) {
                continue;
            }
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = substitute(text(target, "/expr"), &values, &variables);
                checked += 1;
                let what = format!("{name}: {} [{}]", panel_name(panel), text(target, "/refId"));
                match prometheus.query(&expr).await {
                    Ok(result) if !result.is_empty() => {}
                    Ok(_) => failures.push(format!("{what}: empty result for {expr}")),
                    Err(e) => failures.push(format!("{what}: {e} for {expr}")),
                }
            }
        }
    }
    (failures, checked)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_dashboard_query_returns_data_from_a_real_prometheus() {
    let started = Instant::now();
    let llm = start_fake(Behaviour::Healthy).await;
    let llm_url = format!("base_url: {}", llm.base_url);
    let daemon = Daemon::start(&[
        (
            "default",
            pipeline_yaml(
                "default",
                &[(
                    "sqlite:\n    path: \"\"",
                    "sqlite:\n    path: data/results.sqlite",
                )],
            ),
        ),
        (
            "llm",
            pipeline_yaml(
                "llm",
                &[
                    ("engine: extractive", "engine: llm"),
                    ("base_url: http://127.0.0.1:8000/v1", &llm_url),
                ],
            ),
        ),
    ]);
    let rules = grafana_dir().join("alerts/pagemill.rules.yml");
    let prometheus = Prometheus::start(daemon.base.trim_start_matches("http://"), &rules);
    prometheus.wait_ready().await;

    apply_load(&daemon).await;
    // Seven jobs finished (six done, one failed): wait until Prometheus saw them all, then a
    // few more scrapes so that every rate has several samples after the last change.
    wait_for_value(&prometheus, "sum(pagemill_jobs_completed_total)", 7.0).await;
    tokio::time::sleep(Duration::from_secs(4)).await;

    // The cluster row is checked against a cluster node, below.
    let (mut failures, mut checked) = query_failures(&prometheus, |row| row != CLUSTER_ROW).await;

    // The alert rules evaluate without error on real series, and every series they watch
    // exists (a rule on a misspelt name would never fire).
    let answer = prometheus.api("/api/v1/rules", &[]).await;
    let mut watched = HashSet::new();
    for group in answer["data"]["groups"].as_array().into_iter().flatten() {
        for rule in group["rules"].as_array().into_iter().flatten() {
            let rule_name = text(rule, "/name");
            if text(rule, "/health") == "err" {
                failures.push(format!("alert {rule_name}: {}", text(rule, "/lastError")));
            }
            watched.extend(metric_names(text(rule, "/query")));
        }
    }
    if watched.is_empty() {
        failures.push(format!("prometheus loaded no rules:\n{}", prometheus.log()));
    }
    for metric in &watched {
        checked += 1;
        match prometheus.query(&format!("count({metric})")).await {
            Ok(result) if !result.is_empty() => {}
            _ => failures.push(format!(
                "alert rules watch {metric}, which pagemill does not serve"
            )),
        }
    }

    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!(
        "{checked} dashboard and alert queries answered with data in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cluster_row_returns_data_from_a_real_prometheus_scraping_a_cluster_node() {
    let nats = common::nats::NatsServer::start();
    let daemon = Daemon::start_with(
        &[("default", pipeline_yaml("default", &[]))],
        &["--cluster", nats.url.as_str(), "--node-name", "a"],
        Stdio::inherit(),
    );
    let rules = grafana_dir().join("alerts/pagemill.rules.yml");
    let prometheus = Prometheus::start(daemon.base.trim_start_matches("http://"), &rules);
    prometheus.wait_ready().await;
    for _ in 0..2 {
        let id = daemon.submit("default", &fixture("phototest.tif")).await;
        let status = daemon.wait_final(&id).await;
        assert_eq!(status["state"], "done", "{status}");
    }
    wait_for_value(&prometheus, "sum(pagemill_jobs_completed_total)", 2.0).await;
    // The queue's state is sampled every 5 s.
    wait_for_value(&prometheus, "count(pagemill_cluster_acks_pending)", 1.0).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (failures, checked) = query_failures(&prometheus, |row| row == CLUSTER_ROW).await;
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Variables plus at least the row's seven queries.
    assert!(checked >= 8, "{checked} queries");
}
