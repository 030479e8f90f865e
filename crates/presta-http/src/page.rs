//! `GET /`: the status page. Server-rendered HTML, readable without JavaScript (there is none),
//! nothing loaded from elsewhere, refreshing itself every 15 s. It shows what `GET /stacks`
//! says, for people: each stack's health and reasons, its drift, what is blocked or held, the
//! last run, the outputs (the shop's address as a link), and the orphans. It holds no secret:
//! the status never carries one.

use std::fmt::Write;

use serde_json::Value;

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "—".into(),
        other => other.to_string(),
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1d1d1f;background:#fafafa}\
h1{font-size:1.4rem}h2{font-size:1.15rem;margin:0 0 .4rem}section{background:#fff;border:1px solid #ddd;border-radius:8px;padding:1rem;margin:0 0 1rem}\
table{border-collapse:collapse;width:100%;margin:.4rem 0}td,th{border-bottom:1px solid #eee;padding:.25rem .5rem;text-align:left;font-size:.9rem;vertical-align:top}\
.badge{display:inline-block;border-radius:4px;padding:.1rem .45rem;font-weight:600;font-size:.85rem;color:#fff}\
.healthy,.converged,.leader,.single{background:#1e8e3e}.degraded,.pending,.held,.gated,.drifted,.standby{background:#e37400}.down,.error,.blocked{background:#c5221f}.unknown{background:#5f6368}\
code{background:#f1f3f4;padding:0 .2rem;border-radius:3px}.muted{color:#5f6368;font-size:.85rem}";

/// The page for `overview` (the JSON of `GET /stacks`) and `orphans` (of `GET /orphans`).
pub fn render(overview: &Value, orphans: &Value, ready: Result<(), String>) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"15\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>presta-reconciler</title><style>{STYLE}</style></head><body>"
    );
    let role = overview["replica"]["role"].as_str().unwrap_or("single");
    let _ = write!(
        h,
        "<h1>presta-reconciler</h1><p class=\"muted\">replica: <span class=\"badge {role}\">{role}</span> · {} · refreshes every 15 s · <a href=\"/stacks\">JSON</a> · <a href=\"/metrics\">metrics</a></p>",
        match &ready {
            Ok(()) => "ready".to_string(),
            Err(why) => format!("not ready: {}", esc(why)),
        }
    );
    if let Some(regions) = overview["events"].as_array().filter(|r| !r.is_empty()) {
        h.push_str("<p class=\"muted\">drift found by: ");
        for (i, r) in regions.iter().enumerate() {
            let mode = r["mode"].as_str().unwrap_or("polling");
            let _ = write!(
                h,
                "{}{} <span class=\"badge {mode}\" title=\"change events (serve --events)\">{mode}</span>{}{}",
                if i > 0 { " · " } else { "" },
                esc(&text(&r["region"])),
                r["reason"]
                    .as_str()
                    .map(|why| format!(" ({})", esc(why)))
                    .unwrap_or_default(),
                if r["trail_ok"] == false {
                    format!(" · {}", esc(&text(&r["trail"])))
                } else {
                    String::new()
                }
            );
        }
        h.push_str("</p>");
    }
    let stacks = overview["stacks"].as_array().cloned().unwrap_or_default();
    if stacks.is_empty() {
        h.push_str("<p>No stack in the configuration.</p>");
    }
    for s in &stacks {
        stack(&mut h, s);
    }
    if let Some(list) = orphans["orphans"].as_array().filter(|l| !l.is_empty()) {
        h.push_str("<section><h2>Orphaned resources</h2><p class=\"muted\">Resources of stacks no longer in the configuration; never deleted by the daemon (<code>presta-reconciler destroy --stack NAME</code>).</p><table><tr><th>stack</th><th>kind</th><th>name</th><th>id</th></tr>");
        for o in list {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&text(&o["stack"])),
                esc(&text(&o["kind"])),
                esc(&text(&o["name"])),
                esc(&text(&o["id"]))
            );
        }
        h.push_str("</table></section>");
    }
    h.push_str("</body></html>");
    h
}

fn stack(h: &mut String, s: &Value) {
    let name = text(&s["stack"]);
    let state = text(&s["state"]);
    let verdict = s["health"]["verdict"].as_str().unwrap_or("unknown");
    let _ = write!(
        h,
        "<section id=\"stack-{id}\"><h2>{name} <span class=\"badge {verdict}\" title=\"health\">{verdict}</span> <span class=\"badge {state}\" title=\"last run\">{state}</span></h2>\
         <p class=\"muted\">{region} · policy {policy}{sync} · last run {last} ({ms} ms) · next in {next} s</p>",
        id = esc(&name),
        name = esc(&name),
        verdict = esc(verdict),
        state = esc(&state),
        region = esc(&text(&s["region"])),
        policy = esc(&text(&s["policy"])),
        sync = s["sync"]
            .as_str()
            .map(|m| format!(" · {}", esc(m)))
            .unwrap_or_default(),
        last = esc(&text(&s["last_run_at"])),
        ms = esc(&text(&s["last_run_duration_ms"])),
        next = esc(&text(&s["next_run_in_seconds"])),
    );
    if let Some(reasons) = s["health"]["reasons"].as_array().filter(|r| !r.is_empty()) {
        h.push_str("<p><b>Health</b></p><ul>");
        for r in reasons {
            let _ = write!(h, "<li>{}</li>", esc(&text(r)));
        }
        h.push_str("</ul>");
    }
    if let Some(err) = s["last_error"].as_str() {
        let _ = write!(h, "<p><b>Last error</b>: {}</p>", esc(err));
    }
    if let Some(w) = s["waiting_for"].as_str() {
        let _ = write!(h, "<p><b>Waiting</b>: {}</p>", esc(w));
    }
    if s["held"].is_object() {
        let _ = write!(
            h,
            "<p><b>Held</b>: {} — approve plan <code>{}</code> with <code>POST /stacks/{}/approve</code></p>",
            esc(&text(&s["held"]["reason"])),
            esc(&text(&s["held"]["plan_hash"])),
            esc(&name)
        );
    }
    if s["gated"].is_object() {
        let _ = write!(
            h,
            "<p><b>Gated</b>: {} — to promote now, approve <code>{}</code> with <code>POST /stacks/{}/approve</code></p>",
            esc(&text(&s["gated"]["reason"])),
            esc(&text(&s["gated"]["plan_hash"])),
            esc(&name)
        );
    }
    let r = &s["instance_refresh"];
    if r.is_object() {
        let _ = write!(
            h,
            "<p><b>Instance refresh</b>: {} — {}% of the instances replaced{}</p>",
            esc(&text(&r["status"])),
            esc(&text(&r["percentage_complete"])),
            r["status_reason"]
                .as_str()
                .map(|why| format!(" ({})", esc(why)))
                .unwrap_or_default()
        );
    }
    outputs(h, &s["outputs"]);
    drift(h, s);
    resources(h, s);
    last_command(h, &s["last_command"]);
    h.push_str("</section>");
}

/// The outputs, the shop's address as a link.
fn outputs(h: &mut String, out: &Value) {
    h.push_str("<table><tr><th>output</th><th>value</th></tr>");
    if let Some(url) = out["shop_url"].as_str() {
        let _ = write!(
            h,
            "<tr><td>shop</td><td><a href=\"{u}\">{u}</a></td></tr>",
            u = esc(url)
        );
    } else if let Some(dns) = out["alb_dns_name"].as_str() {
        let _ = write!(
            h,
            "<tr><td>shop</td><td><a href=\"http://{d}/\">http://{d}/</a></td></tr>",
            d = esc(dns)
        );
    }
    if let Some(c) = out["certificate"].as_str() {
        let _ = write!(h, "<tr><td>certificate</td><td>{}</td></tr>", esc(c));
    }
    for key in ["tg_arn", "db_endpoint", "efs_id", "asg_name"] {
        if !out[key].is_null() {
            let _ = write!(
                h,
                "<tr><td>{key}</td><td><code>{}</code></td></tr>",
                esc(&text(&out[key]))
            );
        }
    }
    h.push_str("</table>");
}

/// The drift at the last observation, field by field.
fn drift(h: &mut String, s: &Value) {
    let drift = s["drift"].as_array().cloned().unwrap_or_default();
    if drift.is_empty() {
        h.push_str("<p>No drift at the last observation.</p>");
    } else {
        h.push_str("<p><b>Drift</b></p><table class=\"drift\"><tr><th>kind</th><th>resource</th><th>field</th><th>declared</th><th>live</th><th>blocked</th></tr>");
        for d in &drift {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td><code>{}</code></td><td><code>{}</code></td><td>{}</td></tr>",
                esc(&text(&d["kind"])),
                esc(&text(&d["name"])),
                esc(&text(&d["field"])),
                esc(&d["desired"].to_string()),
                esc(&d["live"].to_string()),
                esc(d["blocked"].as_str().unwrap_or(""))
            );
        }
        h.push_str("</table>");
    }
}

/// Every resource: its state and what the last run did.
fn resources(h: &mut String, s: &Value) {
    let resources = s["resources"].as_array().cloned().unwrap_or_default();
    let _ = write!(
        h,
        "<details><summary>{} resources</summary><table><tr><th>kind</th><th>name</th><th>state</th><th>last action</th><th>note</th></tr>",
        resources.len()
    );
    for r in &resources {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&text(&r["kind"])),
            esc(&text(&r["name"])),
            esc(&text(&r["state"])),
            esc(r["last_action"].as_str().unwrap_or("")),
            esc(r["reason"].as_str().unwrap_or(""))
        );
    }
    h.push_str("</table></details>");
}

/// The last maintenance command and its result on each instance.
fn last_command(h: &mut String, cmd: &Value) {
    if let Some(results) = cmd["results"].as_array() {
        let _ = write!(
            h,
            "<p><b>Last maintenance command</b>: <code>{}</code> ({}, {})</p><table class=\"command\"><tr><th>instance</th><th>status</th><th>exit</th><th>output (tail)</th></tr>",
            esc(&text(&cmd["command"])),
            esc(&text(&cmd["finished_at"])),
            if cmd["succeeded"] == true {
                "succeeded"
            } else {
                "not succeeded everywhere"
            }
        );
        for r in results {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                esc(&text(&r["instance"])),
                esc(&text(&r["status"])),
                esc(&text(&r["exit_code"])),
                esc(&text(&r["output"]))
            );
        }
        h.push_str("</table>");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_page_escapes_what_it_shows_and_links_the_shop() {
        let overview = json!({
            "replica": {"role": "single"},
            "stacks": [{
                "stack": "shop", "state": "converged", "region": "eu-west-3", "policy": "enforce",
                "health": {"verdict": "down", "reasons": ["no healthy target <script>"]},
                "outputs": {"alb_dns_name": "shop-alb.example"},
                "drift": [{"kind": "security_group", "name": "shop-app-sg", "field": "ingress", "desired": [], "live": ["0.0.0.0/0:22"]}],
                "resources": []
            }]
        });
        let page = render(&overview, &json!({"orphans": []}), Ok(()));
        assert!(page.contains("href=\"http://shop-alb.example/\""));
        assert!(page.contains("no healthy target &lt;script&gt;"));
        assert!(!page.contains("<script"));
        assert!(page.contains("class=\"badge down\""));
        assert!(page.contains("0.0.0.0/0:22"));
        assert!(page.contains("http-equiv=\"refresh\""));
    }

    #[test]
    fn the_page_says_how_drift_is_found_and_why_it_polls() {
        let overview = json!({
            "replica": {"role": "single"},
            "stacks": [],
            "events": [
                {"region": "eu-west-3", "mode": "polling", "reason": "the event queue is gone <x>", "trail_ok": true, "trail": "ok"},
                {"region": "us-east-1", "mode": "events", "trail_ok": false, "trail": "no CloudTrail trail in us-east-1"}
            ]
        });
        let page = render(&overview, &json!({"orphans": []}), Ok(()));
        assert!(
            page.contains("eu-west-3 <span class=\"badge polling\""),
            "{page}"
        );
        assert!(page.contains("the event queue is gone &lt;x&gt;"));
        assert!(page.contains("us-east-1 <span class=\"badge events\""));
        assert!(page.contains("no CloudTrail trail in us-east-1"));
        let off = render(
            &json!({"replica": {"role": "single"}, "stacks": []}),
            &json!({}),
            Ok(()),
        );
        assert!(!off.contains("drift found by"), "events off: nothing said");
    }
}
