//! Maps a field path back to a byte offset in the TOML source, so that validation errors
//! (found on typed values that carry no position) can still name line and column.

use toml_edit::{Item, Table, Value};

use crate::error::{FieldPath, Segment};

enum Node<'a> {
    Item(&'a Item),
    Table(&'a Table),
    Value(&'a Value),
}

/// Byte offset of the deepest existing node along `path` (the key when there is one).
pub(crate) fn offset_of(doc: &toml_edit::Document<String>, path: &FieldPath) -> Option<usize> {
    let mut node = Node::Table(doc.as_table());
    let mut best: Option<usize> = None;
    for seg in &path.0 {
        let next = match (&node, seg) {
            (Node::Table(t), Segment::Key(k)) => table_child(t, k, &mut best),
            (Node::Item(Item::Table(t)), Segment::Key(k)) => table_child(t, k, &mut best),
            (Node::Item(Item::Value(Value::InlineTable(t))), Segment::Key(k))
            | (Node::Value(Value::InlineTable(t)), Segment::Key(k)) => {
                if let Some(span) = t.key(k).and_then(|key| key.span()) {
                    best = Some(span.start);
                }
                t.get(k).map(Node::Value)
            }
            (Node::Item(Item::ArrayOfTables(a)), Segment::Index(i)) => a.get(*i).map(|t| {
                if let Some(span) = t.span() {
                    best = Some(span.start);
                }
                Node::Table(t)
            }),
            (Node::Item(Item::Value(Value::Array(a))), Segment::Index(i))
            | (Node::Value(Value::Array(a)), Segment::Index(i)) => a.get(*i).map(|v| {
                if let Some(span) = v.span() {
                    best = Some(span.start);
                }
                Node::Value(v)
            }),
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => break,
        }
    }
    best
}

fn table_child<'a>(table: &'a Table, key: &str, best: &mut Option<usize>) -> Option<Node<'a>> {
    let item = table.get(key)?;
    if let Some(span) = table.key(key).and_then(|k| k.span()) {
        *best = Some(span.start);
    } else if let Some(span) = item.span() {
        *best = Some(span.start);
    } else if let Item::Table(t) = item
        && let Some(span) = t.span()
    {
        *best = Some(span.start);
    }
    Some(Node::Item(item))
}
