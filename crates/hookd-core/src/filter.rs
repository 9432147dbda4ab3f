//! Payload filters (B7): a webhook's JSON condition on an event's `data`, `context`, `type`
//! and `entity_id`, checked by the fan-out before a delivery is created. Parsed and validated
//! once ([`Filter::parse`], naming the place in the filter that is wrong), then evaluated as a
//! pure function of the event ([`Filter::check`]): no I/O, no script runtime.
//!
//! Syntax, close to what Convoy's and Outpost's users write:
//! - an object is the AND of its entries; an entry is a path (a JSON pointer into the event,
//!   rooted at `/data`, `/context`, `/type` or `/entity_id`) or a logical operator;
//! - a path's value is a literal (equality) or an object of operators, all of which must hold:
//!   `$eq $neq $gt $gte $lt $lte $in $nin $exists`;
//! - `$and` and `$or` take a non-empty array of filters, `$not` one filter.
//!
//! Semantics: comparisons never convert types (`"5"` is not `5`; `$gt` compares two numbers or
//! two strings, anything else is false); a missing field (or an empty `entity_id`) fails every
//! operator except `$neq`, `$nin` and `$exists: false`; arrays are not searched implicitly (use
//! an index in the path, `/data/items/0/sku`).

use std::fmt;

use serde_json::{Map, Value};

use crate::{Event, InvalidField};

/// Largest filter, as compact JSON.
pub const MAX_FILTER_BYTES: usize = 16 * 1024;
/// Most conditions (paths with operators) in one filter.
pub const MAX_CONDITIONS: usize = 256;
/// Deepest nesting of `$and`, `$or` and `$not`.
pub const MAX_NESTING: usize = 16;
/// Most values in one `$in` or `$nin` list.
pub const MAX_LIST: usize = 1024;
/// Longest path.
pub const MAX_PATH_LEN: usize = 512;

const OPERATORS: &str = "$eq, $neq, $gt, $gte, $lt, $lte, $in, $nin, $exists";
const ROOTS: &str = "/data, /context, /type or /entity_id";

/// A validated filter, with the JSON it was parsed from (what is stored and shown).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "Value", into = "Value")]
pub struct Filter {
    source: Value,
    root: Node,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    All(Vec<Node>),
    Any(Vec<Node>),
    Not(Box<Node>),
    Condition { path: EventPath, op: Op },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Eq(Value),
    Neq(Value),
    Gt(Value),
    Gte(Value),
    Lt(Value),
    Lte(Value),
    In(Vec<Value>),
    Nin(Vec<Value>),
    Exists(bool),
}

/// Where a value of an event is: `/type`, `/entity_id`, or a JSON pointer under `/data` or
/// `/context`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventPath {
    raw: String,
    root: Root,
    /// The pointer below the root (`""` for the root itself).
    rest: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Root {
    Data,
    Context,
    Type,
    EntityId,
}

impl EventPath {
    /// Parses a path; `Err` says what is wrong with it.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.len() > MAX_PATH_LEN {
            return Err(format!("a path must be at most {MAX_PATH_LEN} bytes"));
        }
        let Some(after) = raw.strip_prefix('/') else {
            return Err(format!("{raw:?} is not a path; paths start with {ROOTS}"));
        };
        let (first, rest) = match after.find('/') {
            Some(at) => (&after[..at], &after[at..]),
            None => (after, ""),
        };
        let root = match first {
            "data" => Root::Data,
            "context" => Root::Context,
            "type" => Root::Type,
            "entity_id" => Root::EntityId,
            _ => return Err(format!("path {raw:?} must start with {ROOTS}")),
        };
        if matches!(root, Root::Type | Root::EntityId) && !rest.is_empty() {
            return Err(format!("/{first} is a string; path {raw:?} cannot go inside it"));
        }
        // JSON pointer escapes: `~0` is `~`, `~1` is `/`; any other `~` is malformed.
        let mut chars = rest.chars();
        while let Some(c) = chars.next() {
            if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
                return Err(format!(
                    "path {raw:?} has a '~' not followed by 0 or 1 (write ~0 for '~' and ~1 for '/')"
                ));
            }
        }
        Ok(Self { raw: raw.to_owned(), root, rest: rest.to_owned() })
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The value at this path in `event`; `None` when it is missing (an empty `entity_id`
    /// counts as missing: events without one carry an empty string).
    pub fn resolve<'e>(&self, event: &'e Event) -> Option<std::borrow::Cow<'e, Value>> {
        use std::borrow::Cow;
        match self.root {
            Root::Type => Some(Cow::Owned(Value::String(event.event_type.as_str().to_owned()))),
            Root::EntityId => (!event.entity_id.is_empty())
                .then(|| Cow::Owned(Value::String(event.entity_id.clone()))),
            Root::Data => event.data.pointer(&self.rest).map(Cow::Borrowed),
            Root::Context => event.context.pointer(&self.rest).map(Cow::Borrowed),
        }
    }
}

impl fmt::Display for EventPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// Where in the filter document a problem is, for error messages: `$and[1]."/data/x".$gt`.
#[derive(Clone)]
struct Location(String);

impl Location {
    fn key(&self, key: &str) -> Self {
        if key.starts_with('$') {
            Self(if self.0.is_empty() { key.to_owned() } else { format!("{}.{key}", self.0) })
        } else if self.0.is_empty() {
            Self(format!("{key:?}"))
        } else {
            Self(format!("{}.{key:?}", self.0))
        }
    }

    fn index(&self, i: usize) -> Self {
        Self(format!("{}[{i}]", self.0))
    }

    fn error(&self, reason: impl fmt::Display) -> InvalidField {
        let at = if self.0.is_empty() { "the top level" } else { self.0.as_str() };
        InvalidField::new("filter", format!("at {at}: {reason}"))
    }
}

/// Counts what the parse has built, against the limits.
struct Budget {
    conditions: usize,
}

impl Filter {
    /// Parses and validates a filter; the error names the place in the filter that is wrong
    /// (field `filter`). An empty object is refused: leave the filter unset to deliver every
    /// event.
    pub fn parse(source: Value) -> Result<Self, InvalidField> {
        let size = serde_json::to_vec(&source).map(|v| v.len()).unwrap_or(usize::MAX);
        if size > MAX_FILTER_BYTES {
            return Err(InvalidField::new(
                "filter",
                format!("is {size} bytes; at most {MAX_FILTER_BYTES} are allowed"),
            ));
        }
        let at = Location(String::new());
        let Value::Object(map) = &source else {
            return Err(at.error("a filter must be a JSON object"));
        };
        if map.is_empty() {
            return Err(at.error(
                "a filter needs at least one condition; leave it unset to deliver every event",
            ));
        }
        let mut budget = Budget { conditions: 0 };
        let root = parse_object(map, &at, 0, &mut budget)?;
        Ok(Self { source, root })
    }

    /// The filter as JSON, as it was given.
    pub fn source(&self) -> &Value {
        &self.source
    }

    /// Whether the event passes.
    pub fn matches(&self, event: &Event) -> bool {
        self.check(event).is_ok()
    }

    /// `Ok` if the event passes; otherwise which condition stopped it, for people (test
    /// sends show it).
    pub fn check(&self, event: &Event) -> Result<(), String> {
        eval(&self.root, event)
    }
}

impl TryFrom<Value> for Filter {
    type Error = InvalidField;
    fn try_from(value: Value) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl From<Filter> for Value {
    fn from(filter: Filter) -> Self {
        filter.source
    }
}

fn parse_object(
    map: &Map<String, Value>,
    at: &Location,
    depth: usize,
    budget: &mut Budget,
) -> Result<Node, InvalidField> {
    if depth > MAX_NESTING {
        return Err(at.error(format!("$and, $or and $not nest at most {MAX_NESTING} deep")));
    }
    let mut all = Vec::with_capacity(map.len());
    for (key, value) in map {
        let here = at.key(key);
        let node = match key.as_str() {
            "$and" | "$or" => {
                let Value::Array(items) = value else {
                    return Err(here.error("needs an array of filters"));
                };
                if items.is_empty() {
                    return Err(here.error("needs at least one filter"));
                }
                let mut nodes = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let inner = here.index(i);
                    let Value::Object(m) = item else {
                        return Err(inner.error("each entry must be a filter object"));
                    };
                    if m.is_empty() {
                        return Err(inner.error("an empty filter is not allowed here"));
                    }
                    nodes.push(parse_object(m, &inner, depth + 1, budget)?);
                }
                if key == "$and" { Node::All(nodes) } else { Node::Any(nodes) }
            }
            "$not" => {
                let Value::Object(m) = value else {
                    return Err(here.error("needs a filter object"));
                };
                if m.is_empty() {
                    return Err(here.error("an empty filter is not allowed here"));
                }
                Node::Not(Box::new(parse_object(m, &here, depth + 1, budget)?))
            }
            k if k.starts_with('$') => {
                return Err(here.error(format!(
                    "{k} is not allowed here: an object holds paths ({ROOTS}) and $and, $or, $not; \
                     comparisons ({OPERATORS}) go inside a path: {{\"/data/x\": {{\"$gt\": 1}}}}"
                )));
            }
            path => {
                let path = EventPath::parse(path).map_err(|e| here.error(e))?;
                parse_condition(path, value, &here, budget)?
            }
        };
        all.push(node);
    }
    Ok(if all.len() == 1 { all.remove(0) } else { Node::All(all) })
}

fn parse_condition(
    path: EventPath,
    value: &Value,
    at: &Location,
    budget: &mut Budget,
) -> Result<Node, InvalidField> {
    let operators = match value {
        Value::Object(m) if m.keys().any(|k| k.starts_with('$')) => m,
        // A literal (an object without operators included): equality.
        literal => {
            count(budget, at)?;
            return Ok(Node::Condition { path, op: Op::Eq(literal.clone()) });
        }
    };
    if let Some(plain) = operators.keys().find(|k| !k.starts_with('$')) {
        return Err(at.error(format!(
            "mixes operators with the plain key {plain:?}; to compare with an object use {{\"$eq\": {{…}}}}"
        )));
    }
    let mut ops = Vec::with_capacity(operators.len());
    for (name, operand) in operators {
        let here = at.key(name);
        count(budget, &here)?;
        let op = match name.as_str() {
            "$eq" => Op::Eq(operand.clone()),
            "$neq" => Op::Neq(operand.clone()),
            "$gt" | "$gte" | "$lt" | "$lte" => {
                if !matches!(operand, Value::Number(_) | Value::String(_)) {
                    return Err(here.error(format!(
                        "{name} compares with a number or a string, not {}",
                        kind(operand)
                    )));
                }
                let v = operand.clone();
                match name.as_str() {
                    "$gt" => Op::Gt(v),
                    "$gte" => Op::Gte(v),
                    "$lt" => Op::Lt(v),
                    _ => Op::Lte(v),
                }
            }
            "$in" | "$nin" => {
                let Value::Array(items) = operand else {
                    return Err(here.error(format!("{name} needs an array, not {}", kind(operand))));
                };
                if items.len() > MAX_LIST {
                    return Err(here.error(format!("{name} may list at most {MAX_LIST} values")));
                }
                if name == "$in" { Op::In(items.clone()) } else { Op::Nin(items.clone()) }
            }
            "$exists" => {
                let Value::Bool(b) = operand else {
                    return Err(
                        here.error(format!("$exists needs true or false, not {}", kind(operand)))
                    );
                };
                Op::Exists(*b)
            }
            other => {
                return Err(here.error(format!("unknown operator {other}; allowed: {OPERATORS}")));
            }
        };
        ops.push(Node::Condition { path: path.clone(), op });
    }
    Ok(if ops.len() == 1 { ops.remove(0) } else { Node::All(ops) })
}

fn count(budget: &mut Budget, at: &Location) -> Result<(), InvalidField> {
    budget.conditions += 1;
    if budget.conditions > MAX_CONDITIONS {
        return Err(at.error(format!("a filter may hold at most {MAX_CONDITIONS} conditions")));
    }
    Ok(())
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn eval(node: &Node, event: &Event) -> Result<(), String> {
    match node {
        Node::All(nodes) => nodes.iter().try_for_each(|n| eval(n, event)),
        Node::Any(nodes) => {
            let mut first = None;
            for n in nodes {
                match eval(n, event) {
                    Ok(()) => return Ok(()),
                    Err(e) => {
                        first.get_or_insert(e);
                    }
                }
            }
            Err(format!("no condition of $or holds (the first: {})", first.unwrap_or_default()))
        }
        Node::Not(inner) => match eval(inner, event) {
            Ok(()) => Err("the condition under $not holds".to_owned()),
            Err(_) => Ok(()),
        },
        Node::Condition { path, op } => {
            let value = path.resolve(event);
            if holds(op, value.as_deref()) {
                Ok(())
            } else {
                let shown = value.map_or_else(
                    || "missing".to_owned(),
                    |v| crate::text::shorten(&v.to_string(), 80).into_owned(),
                );
                Err(format!("{path} is {shown}: not {}", describe(op)))
            }
        }
    }
}

fn describe(op: &Op) -> String {
    let short = |v: &Value| crate::text::shorten(&v.to_string(), 80).into_owned();
    match op {
        Op::Eq(v) => format!("$eq {}", short(v)),
        Op::Neq(v) => format!("$neq {}", short(v)),
        Op::Gt(v) => format!("$gt {}", short(v)),
        Op::Gte(v) => format!("$gte {}", short(v)),
        Op::Lt(v) => format!("$lt {}", short(v)),
        Op::Lte(v) => format!("$lte {}", short(v)),
        Op::In(v) => format!("$in {}", short(&Value::Array(v.clone()))),
        Op::Nin(v) => format!("$nin {}", short(&Value::Array(v.clone()))),
        Op::Exists(b) => format!("$exists {b}"),
    }
}

fn holds(op: &Op, value: Option<&Value>) -> bool {
    use std::cmp::Ordering::{Equal, Greater, Less};
    match (op, value) {
        (Op::Exists(want), v) => v.is_some() == *want,
        (Op::Neq(_) | Op::Nin(_), None) => true,
        (_, None) => false,
        (Op::Eq(x), Some(v)) => same(v, x),
        (Op::Neq(x), Some(v)) => !same(v, x),
        (Op::In(xs), Some(v)) => xs.iter().any(|x| same(v, x)),
        (Op::Nin(xs), Some(v)) => !xs.iter().any(|x| same(v, x)),
        (Op::Gt(x), Some(v)) => order(v, x) == Some(Greater),
        (Op::Gte(x), Some(v)) => matches!(order(v, x), Some(Greater | Equal)),
        (Op::Lt(x), Some(v)) => order(v, x) == Some(Less),
        (Op::Lte(x), Some(v)) => matches!(order(v, x), Some(Less | Equal)),
    }
}

/// Equality without type conversion, numbers by value (`1` equals `1.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x == y || matches!((x.as_f64(), y.as_f64()), (Some(p), Some(q)) if p == q)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, p)| y.get(k).is_some_and(|q| same(p, q)))
        }
        _ => a == b,
    }
}

/// Two numbers, or two strings (by bytes: RFC 3339 times in UTC order correctly); any other
/// pair has no order.
fn order(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(p), Some(q)) = (x.as_i64(), y.as_i64()) {
                return Some(p.cmp(&q));
            }
            x.as_f64()?.partial_cmp(&y.as_f64()?)
        }
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event() -> Event {
        let raw = json!({
            "id": "e1", "type": "order-created", "entity_id": "o-7",
            "context": {"shop": "berlin", "test": false},
            "data": {
                "amount": 120, "price": 9.5, "currency": "EUR", "tags": ["a", "b"],
                "customer": {"email": "ada@example.com", "tier": "gold", "vip": true},
                "note": null, "items": [{"sku": "x-1", "qty": 2}], "a/b": 1, "t~": 2,
                "at": "2026-03-01T10:00:00Z"
            }
        });
        Event::from_json(raw.to_string().as_bytes(), chrono::Utc::now()).expect("event")
    }

    fn passes(filter: Value) -> bool {
        Filter::parse(filter.clone()).unwrap_or_else(|e| panic!("{filter}: {e}")).matches(&event())
    }

    #[test]
    fn each_operator_holds_and_fails_as_documented() {
        let cases = [
            (json!({"/data/currency": "EUR"}), true),
            (json!({"/data/currency": {"$eq": "USD"}}), false),
            (json!({"/data/currency": {"$neq": "USD"}}), true),
            (json!({"/data/amount": {"$gt": 100}}), true),
            (json!({"/data/amount": {"$gt": 120}}), false),
            (json!({"/data/amount": {"$gte": 120}}), true),
            (json!({"/data/amount": {"$lt": 120.5}}), true),
            (json!({"/data/amount": {"$lte": 119}}), false),
            (json!({"/data/price": {"$gt": 9, "$lt": 10}}), true),
            (json!({"/data/amount": 120.0}), true),
            (json!({"/data/customer/tier": {"$in": ["gold", "platinum"]}}), true),
            (json!({"/data/customer/tier": {"$nin": ["gold"]}}), false),
            (json!({"/data/customer/vip": {"$exists": true}}), true),
            (json!({"/data/customer/phone": {"$exists": false}}), true),
            (json!({"/data/at": {"$gte": "2026-01-01T00:00:00Z"}}), true),
            (json!({"/type": {"$in": ["order-created", "order-paid"]}}), true),
            (json!({"/entity_id": "o-7"}), true),
            (json!({"/context/shop": "berlin", "/context/test": false}), true),
            (json!({"/data/tags": ["a", "b"]}), true),
            (
                json!({"/data/customer": {"$eq": {"email": "ada@example.com", "tier": "gold", "vip": true}}}),
                true,
            ),
        ];
        for (filter, expected) in cases {
            assert_eq!(passes(filter.clone()), expected, "{filter}");
        }
    }

    #[test]
    fn logical_operators_combine_conditions() {
        assert!(passes(
            json!({"$or": [{"/data/amount": {"$gt": 1000}}, {"/data/currency": "EUR"}]})
        ));
        assert!(!passes(
            json!({"$or": [{"/data/amount": {"$gt": 1000}}, {"/data/currency": "USD"}]})
        ));
        assert!(passes(
            json!({"$and": [{"/data/amount": {"$gt": 100}}, {"$not": {"/context/test": true}}]})
        ));
        assert!(!passes(json!({"$not": {"/data/currency": "EUR"}})));
        assert!(passes(json!({"$and": [{"$or": [{"/type": "x"}, {"/type": "order-created"}]}]})));
    }

    #[test]
    fn nested_paths_escapes_and_indices_resolve() {
        assert!(passes(json!({"/data/items/0/sku": "x-1"})));
        assert!(passes(json!({"/data/items/0/qty": {"$gte": 2}})));
        assert!(!passes(json!({"/data/items/1/sku": {"$exists": true}})));
        assert!(passes(json!({"/data/a~1b": 1})));
        assert!(passes(json!({"/data/t~0": 2})));
        assert!(passes(json!({"/data": {"$exists": true}})));
    }

    #[test]
    fn missing_fields_fail_all_but_neq_nin_and_exists_false() {
        for (op, expected) in [
            (json!({"$eq": 1}), false),
            (json!({"$neq": 1}), true),
            (json!({"$gt": 1}), false),
            (json!({"$lte": "z"}), false),
            (json!({"$in": [1]}), false),
            (json!({"$nin": [1]}), true),
            (json!({"$exists": false}), true),
        ] {
            let filter = json!({"/data/nope/deeper": op});
            assert_eq!(passes(filter.clone()), expected, "{filter}");
        }
        // `null` is a value, not a missing field.
        assert!(passes(json!({"/data/note": {"$exists": true}})));
        assert!(passes(json!({"/data/note": null})));
        let raw = json!({"id": "e2", "type": "t", "data": {}});
        let keyless = Event::from_json(raw.to_string().as_bytes(), chrono::Utc::now()).expect("e");
        let f = Filter::parse(json!({"/entity_id": {"$exists": false}})).expect("valid");
        assert!(f.matches(&keyless), "an empty entity_id is missing");
    }

    #[test]
    fn type_mismatches_never_convert() {
        assert!(!passes(json!({"/data/amount": "120"})));
        assert!(!passes(json!({"/data/amount": {"$gt": "100"}})));
        assert!(!passes(json!({"/data/currency": {"$gt": 1}})));
        assert!(!passes(json!({"/data/customer": {"$gt": 1}})));
        assert!(!passes(json!({"/data/customer/vip": "true"})));
        assert!(!passes(json!({"/data/amount": {"$in": ["120"]}})));
        assert!(passes(json!({"/data/amount": {"$nin": ["120"]}})));
    }

    #[test]
    fn invalid_filters_name_the_place_that_is_wrong() {
        let reason = |f: Value| Filter::parse(f).expect_err("invalid").reason;
        for (filter, expected) in [
            (json!([]), "at the top level: a filter must be a JSON object"),
            (json!({}), "at the top level: a filter needs at least one condition"),
            (json!({"data/x": 1}), "at \"data/x\": \"data/x\" is not a path"),
            (json!({"/payload/x": 1}), "at \"/payload/x\": path \"/payload/x\" must start with"),
            (json!({"/type/x": 1}), "at \"/type/x\": /type is a string"),
            (json!({"/data/a~2": 1}), "has a '~' not followed by 0 or 1"),
            (
                json!({"/data/x": {"$gt": [1]}}),
                "at \"/data/x\".$gt: $gt compares with a number or a string, not an array",
            ),
            (
                json!({"/data/x": {"$in": 1}}),
                "at \"/data/x\".$in: $in needs an array, not a number",
            ),
            (
                json!({"/data/x": {"$exists": "yes"}}),
                "at \"/data/x\".$exists: $exists needs true or false",
            ),
            (json!({"/data/x": {"$regex": "a"}}), "at \"/data/x\".$regex: unknown operator $regex"),
            (json!({"/data/x": {"$eq": 1, "y": 2}}), "mixes operators with the plain key \"y\""),
            (json!({"$and": {}}), "at $and: needs an array of filters"),
            (json!({"$or": []}), "at $or: needs at least one filter"),
            (
                json!({"$and": [{"/data/x": 1}, 3]}),
                "at $and[1]: each entry must be a filter object",
            ),
            (
                json!({"$and": [{"$not": {"/data/x": {"$lt": null}}}]}),
                "at $and[0].$not.\"/data/x\".$lt:",
            ),
            (json!({"$gt": 1}), "at $gt: $gt is not allowed here"),
        ] {
            let got = reason(filter.clone());
            assert!(got.contains(expected), "{filter}: {got}");
        }
        assert_eq!(Filter::parse(json!([])).expect_err("x").field, "filter");
    }

    #[test]
    fn filters_are_bounded() {
        let many: Map<String, Value> =
            (0..=MAX_CONDITIONS).map(|i| (format!("/data/f{i}"), json!(i))).collect();
        assert!(
            Filter::parse(Value::Object(many))
                .expect_err("too many")
                .reason
                .contains("at most 256 conditions")
        );
        let mut deep = json!({"/data/x": 1});
        for _ in 0..=MAX_NESTING {
            deep = json!({"$not": deep});
        }
        assert!(Filter::parse(deep).expect_err("too deep").reason.contains("nest at most"));
        let big = json!({"/data/x": "y".repeat(MAX_FILTER_BYTES)});
        assert!(Filter::parse(big).expect_err("too big").reason.contains("bytes"));
    }

    #[test]
    fn a_rejection_says_which_condition_failed() {
        let f = Filter::parse(json!({"/data/amount": {"$gt": 500}})).expect("valid");
        assert_eq!(f.check(&event()), Err("/data/amount is 120: not $gt 500".to_owned()));
        let f = Filter::parse(json!({"/data/zip": "10115"})).expect("valid");
        assert_eq!(f.check(&event()), Err("/data/zip is missing: not $eq \"10115\"".to_owned()));
    }

    #[test]
    fn a_filter_round_trips_as_its_source() {
        let source = json!({"/data/amount": {"$gte": 10}, "$or": [{"/type": "a"}, {"/type": "b"}]});
        let f = Filter::parse(source.clone()).expect("valid");
        let text = serde_json::to_string(&f).expect("json");
        let again: Filter = serde_json::from_str(&text).expect("parses");
        assert_eq!(again, f);
        assert_eq!(again.source(), &source);
    }
}
