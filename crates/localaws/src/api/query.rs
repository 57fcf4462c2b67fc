//! The query protocols: awsQuery (Auto Scaling, ELBv2) and its EC2 dialect.
//!
//! Requests are form-encoded `Action=...&Version=...` with lists as `Name.member.N` (EC2:
//! `Name.N`) and nested members as `Outer.Inner`. Responses are XML: awsQuery wraps the result
//! as `<OpResponse><OpResult>...</OpResult><ResponseMetadata><RequestId>`, and reports errors as
//! `<ErrorResponse><Error><Type/><Code/><Message/></Error><RequestId/>`; EC2 puts the result
//! members straight under `<OpResponse>` next to `<requestId>`, names them in lowerCamelCase,
//! lists them as `<item>`, and reports errors as `<Response><Errors><Error>...</Errors>`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::SystemTime;

use super::ApiError;

/// Form parameters of one request.
#[derive(Debug, Default, Clone)]
pub struct Params(BTreeMap<String, String>);

impl Params {
    /// Parses a form body (and/or a query string).
    pub fn parse(parts: &[&[u8]]) -> Self {
        let mut map = BTreeMap::new();
        for part in parts {
            for (k, v) in form_urlencoded::parse(part) {
                map.insert(k.into_owned(), v.into_owned());
            }
        }
        Self(map)
    }

    /// A parameter.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// A required parameter.
    pub fn req(&self, name: &str) -> Result<&str, ApiError> {
        self.get(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ApiError::missing(name))
    }

    /// An optional whole number in `lo..=hi`.
    pub fn num(&self, name: &str, lo: i64, hi: i64) -> Result<Option<i64>, ApiError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        match v.parse::<i64>() {
            Ok(n) if (lo..=hi).contains(&n) => Ok(Some(n)),
            _ => Err(ApiError::validation(format!(
                "invalid value {v:?} for {name}: expected a whole number from {lo} to {hi}"
            ))),
        }
    }

    /// An optional `u32` in `lo..=hi`.
    pub fn u32(&self, name: &str, lo: u32, hi: u32) -> Result<Option<u32>, ApiError> {
        Ok(self
            .num(name, i64::from(lo), i64::from(hi))?
            .and_then(|n| u32::try_from(n).ok()))
    }

    /// An optional boolean.
    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(v) => Err(ApiError::validation(format!(
                "invalid value {v:?} for {name}: expected true or false"
            ))),
        }
    }

    /// The parameters under `prefix.` as their own set (`A.B.C` → `B.C` for prefix `A`).
    pub fn nested(&self, prefix: &str) -> Params {
        let p = format!("{prefix}.");
        Self(
            self.0
                .range(p.clone()..)
                .take_while(|(k, _)| k.starts_with(&p))
                .map(|(k, v)| (k[p.len()..].to_owned(), v.clone()))
                .collect(),
        )
    }

    /// Whether any parameter is `prefix` or lies under `prefix.`.
    pub fn has(&self, prefix: &str) -> bool {
        self.0.contains_key(prefix) || !self.nested(prefix).0.is_empty()
    }

    /// Members of an awsQuery list `prefix.member.N`, in order of N.
    pub fn members(&self, prefix: &str) -> Vec<Params> {
        self.indexed(&format!("{prefix}.member"))
    }

    /// Scalar members of an awsQuery list.
    pub fn member_values(&self, prefix: &str) -> Vec<String> {
        scalar(self.members(prefix))
    }

    /// Members of an EC2 list `prefix.N`, in order of N.
    pub fn items(&self, prefix: &str) -> Vec<Params> {
        self.indexed(prefix)
    }

    /// Scalar members of an EC2 list.
    pub fn item_values(&self, prefix: &str) -> Vec<String> {
        scalar(self.items(prefix))
    }

    fn indexed(&self, prefix: &str) -> Vec<Params> {
        let under = self.nested(prefix);
        let mut by_index: BTreeMap<u32, Params> = BTreeMap::new();
        for (k, v) in under.0 {
            let (index, rest) = match k.split_once('.') {
                Some((i, rest)) => (i.to_owned(), rest.to_owned()),
                None => (k.clone(), String::new()),
            };
            let Ok(i) = index.parse::<u32>() else {
                continue;
            };
            by_index.entry(i).or_default().0.insert(rest, v);
        }
        by_index.into_values().collect()
    }
}

fn scalar(v: Vec<Params>) -> Vec<String> {
    v.into_iter().filter_map(|p| p.0.get("").cloned()).collect()
}

/// An XML document under construction.
#[derive(Debug, Default)]
pub struct Xml(String);

impl Xml {
    /// An empty document.
    pub fn new() -> Self {
        Self(String::with_capacity(1024))
    }

    /// `<tag>`.
    pub fn open(&mut self, tag: &str) -> &mut Self {
        let _ = write!(self.0, "<{tag}>");
        self
    }

    /// `</tag>`.
    pub fn close(&mut self, tag: &str) -> &mut Self {
        let _ = write!(self.0, "</{tag}>");
        self
    }

    /// `<tag>value</tag>`, escaped.
    pub fn leaf(&mut self, tag: &str, value: impl std::fmt::Display) -> &mut Self {
        let _ = write!(self.0, "<{tag}>");
        escape_into(&mut self.0, &value.to_string());
        let _ = write!(self.0, "</{tag}>");
        self
    }

    /// Escaped text inside the current element.
    pub fn text(&mut self, value: &str) -> &mut Self {
        escape_into(&mut self.0, value);
        self
    }

    /// A leaf when the value is there.
    pub fn opt(&mut self, tag: &str, value: Option<impl std::fmt::Display>) -> &mut Self {
        if let Some(v) = value {
            self.leaf(tag, v);
        }
        self
    }

    /// A timestamp leaf (ISO 8601, milliseconds, UTC).
    pub fn time(&mut self, tag: &str, t: SystemTime) -> &mut Self {
        self.leaf(tag, humantime::format_rfc3339_millis(t))
    }

    /// `<tag>` with children written by `f`, then `</tag>`.
    pub fn el(&mut self, tag: &str, f: impl FnOnce(&mut Self)) -> &mut Self {
        self.open(tag);
        f(self);
        self.close(tag)
    }

    /// A list: `<tag><member>..</member>...</tag>` (or `<item>` in EC2).
    pub fn list<T>(
        &mut self,
        tag: &str,
        member: &str,
        items: impl IntoIterator<Item = T>,
        mut f: impl FnMut(&mut Self, T),
    ) -> &mut Self {
        self.open(tag);
        for item in items {
            self.open(member);
            f(self, item);
            self.close(member);
        }
        self.close(tag)
    }

    /// The text.
    pub fn finish(self) -> String {
        self.0
    }
}

/// Escapes XML text.
pub fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
}

/// An awsQuery success document.
pub fn response(action: &str, xmlns: &str, result: &Xml, request_id: &str) -> String {
    let mut x = Xml::new();
    x.0.push_str(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = write!(x.0, r#"<{action}Response xmlns="{xmlns}">"#);
    x.open(&format!("{action}Result"));
    x.0.push_str(&result.0);
    x.close(&format!("{action}Result"));
    x.el("ResponseMetadata", |x| {
        x.leaf("RequestId", request_id);
    });
    x.close(&format!("{action}Response"));
    x.finish()
}

/// An awsQuery error document.
pub fn error(xmlns: &str, code: &str, message: &str, sender: bool, request_id: &str) -> String {
    let mut x = Xml::new();
    x.0.push_str(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = write!(x.0, r#"<ErrorResponse xmlns="{xmlns}">"#);
    x.el("Error", |x| {
        x.leaf("Type", if sender { "Sender" } else { "Receiver" })
            .leaf("Code", code)
            .leaf("Message", message);
    });
    x.leaf("RequestId", request_id);
    x.close("ErrorResponse");
    x.finish()
}

/// An EC2 success document.
pub fn ec2_response(action: &str, body: &Xml, request_id: &str) -> String {
    let mut x = Xml::new();
    x.0.push_str(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = write!(
        x.0,
        r#"<{action}Response xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">"#
    );
    x.leaf("requestId", request_id);
    x.0.push_str(&body.0);
    x.close(&format!("{action}Response"));
    x.finish()
}

/// An EC2 error document.
pub fn ec2_error(code: &str, message: &str, request_id: &str) -> String {
    let mut x = Xml::new();
    x.0.push_str(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    x.el("Response", |x| {
        x.el("Errors", |x| {
            x.el("Error", |x| {
                x.leaf("Code", code).leaf("Message", message);
            });
        });
        x.leaf("RequestID", request_id);
    });
    x.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_nested_members() {
        let p = Params::parse(&[
            b"Action=X&Names.member.2=b&Names.member.1=a&Targets.member.1.Id=i-1&Targets.member.1.Port=80&Targets.member.10.Id=i-10&Pref.Min=90&V.1=x&V.2=y",
        ]);
        assert_eq!(p.member_values("Names"), ["a", "b"]);
        let t = p.members("Targets");
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].get("Id"), Some("i-1"));
        assert_eq!(t[0].get("Port"), Some("80"));
        assert_eq!(t[1].get("Id"), Some("i-10"));
        assert_eq!(p.nested("Pref").get("Min"), Some("90"));
        assert_eq!(p.item_values("V"), ["x", "y"]);
        assert!(p.members("None").is_empty());
        assert!(p.has("Pref") && !p.has("Pre"));
    }

    #[test]
    fn numbers_and_booleans_are_checked() {
        let p = Params::parse(&[b"A=5&B=x&C=true&D=yes"]);
        assert_eq!(p.u32("A", 0, 10).ok().flatten(), Some(5));
        assert!(p.u32("A", 6, 10).is_err());
        assert!(p.u32("B", 0, 10).is_err());
        assert_eq!(p.bool("C").ok().flatten(), Some(true));
        assert!(p.bool("D").is_err());
        assert!(p.req("Z").is_err());
    }

    #[test]
    fn xml_is_escaped() {
        let mut x = Xml::new();
        x.leaf("M", "<a & 'b'>");
        assert_eq!(x.finish(), "<M>&lt;a &amp; &apos;b&apos;&gt;</M>");
    }
}
