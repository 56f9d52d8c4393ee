//! `${VAR}` and `${VAR:-default}` in pipeline YAML, replaced from the environment before the
//! file is parsed, so that secrets and per-host settings (an LLM's address, its model) stay
//! out of the file. Comment lines are left alone; an unset variable without a default is an
//! error at its line and column.

/// One unset variable: 1-based line and column, and the variable's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unset {
    pub line: usize,
    pub column: usize,
    pub name: String,
}

/// Replaces every `${NAME}` / `${NAME:-default}` outside comment lines using `lookup`.
pub fn interpolate(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, Vec<Unset>> {
    let mut out = String::with_capacity(text.len());
    let mut unset = Vec::new();
    for (number, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find("${") {
            let Some(len) = rest[start..].find('}') else {
                break;
            };
            out.push_str(&rest[..start]);
            let inner = &rest[start + 2..start + len];
            let (name, default) = match inner.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (inner, None),
            };
            match lookup(name)
                .filter(|v| !v.is_empty())
                .or(default.map(str::to_string))
            {
                Some(value) => out.push_str(&value),
                None => unset.push(Unset {
                    line: number + 1,
                    column: line.len() - rest.len() + start + 1,
                    name: name.to_string(),
                }),
            }
            rest = &rest[start + len + 1..];
        }
        out.push_str(rest);
    }
    if unset.is_empty() {
        Ok(out)
    } else {
        Err(unset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("llm.local".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn variables_and_defaults_are_replaced() {
        let text = "a: http://${HOST}:${PORT:-8080}/v1\nb: ${EMPTY:-x}\n# ${NOT_SET}\n";
        assert_eq!(
            interpolate(text, env).unwrap(),
            "a: http://llm.local:8080/v1\nb: x\n# ${NOT_SET}\n"
        );
    }

    #[test]
    fn unset_variables_are_reported_where_they_are() {
        let err = interpolate("a: 1\nb: x ${MISSING}\n", env).unwrap_err();
        assert_eq!(
            err,
            vec![Unset {
                line: 2,
                column: 6,
                name: "MISSING".into()
            }]
        );
    }
}
