//! Errors as each AWS protocol puts them on the wire, so that the SDK parses them as it parses
//! AWS's: EC2's query protocol, the `awsQuery` protocol (ELB, Auto Scaling, RDS), EFS's
//! REST-JSON and SSM's JSON 1.1.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_types::body::SdkBody;

/// An error answer: its AWS code and message (the HTTP status follows from the code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: String,
    pub message: String,
}

impl Failure {
    pub fn new(code: &str, message: impl Into<String>) -> Failure {
        Failure {
            code: code.to_string(),
            message: message.into(),
        }
    }

    /// The HTTP status AWS sends with this code.
    pub fn status(&self) -> u16 {
        let c = self.code.as_str();
        if c.contains("AccessDenied") || c == "UnauthorizedOperation" {
            403
        } else if c.contains("NotFound") || c.starts_with("ResourceNotFound") {
            // The query protocols answer 400, REST-JSON services 404 (applied in `error`).
            400
        } else if c == "ServiceUnavailable" || c == "Unavailable" || c == "RequestLimitExceeded" {
            503
        } else if c == "InternalError" || c == "InternalFailure" || c == "InternalServerError" {
            500
        } else {
            400
        }
    }
}

/// The protocols of the six services.
#[derive(Debug, Clone, Copy)]
pub enum Wire {
    Ec2,
    Query,
    RestJson,
    Json,
}

impl Wire {
    pub fn error(self, _operation: &str, f: &Failure) -> HttpResponse {
        let (status, content_type, body) = match self {
            Wire::Ec2 => (
                f.status(),
                "text/xml",
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{}</Code><Message>{}</Message></Error></Errors><RequestID>fake</RequestID></Response>",
                    xml(&f.code),
                    xml(&f.message)
                ),
            ),
            Wire::Query => (
                f.status(),
                "text/xml",
                format!(
                    "<ErrorResponse><Error><Type>Sender</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>fake</RequestId></ErrorResponse>",
                    xml(&f.code),
                    xml(&f.message)
                ),
            ),
            Wire::RestJson => (
                if f.code.contains("NotFound") {
                    404
                } else {
                    f.status()
                },
                "application/json",
                format!(
                    "{{\"ErrorCode\":{},\"Message\":{}}}",
                    json(&f.code),
                    json(&f.message)
                ),
            ),
            Wire::Json => (
                f.status(),
                "application/x-amz-json-1.1",
                format!(
                    "{{\"__type\":{},\"message\":{}}}",
                    json(&f.code),
                    json(&f.message)
                ),
            ),
        };
        let mut response =
            HttpResponse::new(status.try_into().expect("a status"), SdkBody::from(body));
        response.headers_mut().insert("content-type", content_type);
        if matches!(self, Wire::RestJson) {
            response
                .headers_mut()
                .insert("x-amzn-errortype", f.code.clone());
        }
        response
    }
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn json(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_codes() {
        assert_eq!(Failure::new("AccessDenied", "").status(), 403);
        assert_eq!(Failure::new("UnauthorizedOperation", "").status(), 403);
        assert_eq!(Failure::new("Throttling", "").status(), 400);
        assert_eq!(Failure::new("RequestLimitExceeded", "").status(), 503);
        assert_eq!(Failure::new("InternalError", "").status(), 500);
        let r = Wire::RestJson.error("X", &Failure::new("FileSystemNotFound", "gone"));
        assert_eq!(r.status().as_u16(), 404);
        assert_eq!(
            r.headers().get("x-amzn-errortype"),
            Some("FileSystemNotFound")
        );
        assert_eq!(json("a\"b\n"), "\"a\\\"b\\u000a\"");
    }
}
