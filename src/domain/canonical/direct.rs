//! Canonical JSON (RFC 8785, as [`super::write_value`] writes it) straight from any
//! `Serialize` value, without building a `serde_json::Value` first.
//!
//! Why: every approval change puts the whole approval into its audit record, and turning the
//! approval into a `Value` (a `String` per key and per text, a map node per object) only to
//! write it out sorted was a tenth of the runner's time per submission. Here each object
//! writes its members into one scratch buffer, sorts their positions by key and copies them
//! out: two allocations per object instead of one or two per member.
//!
//! The text is the same as `write_value(&serde_json::to_value(x))` (a test checks it). What
//! this cannot write the same way (a key that needs escaping, an enum variant with data, raw
//! bytes) is refused with [`NotDirect`], and the caller takes the `Value` path instead.

use super::{write_number, write_string};
use serde::ser::{self, Serialize};
use std::fmt;

/// A value this writer does not write (the caller falls back to the `Value` path).
#[derive(Debug)]
pub struct NotDirect;

impl fmt::Display for NotDirect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not written directly")
    }
}

impl std::error::Error for NotDirect {}

impl ser::Error for NotDirect {
    fn custom<T: fmt::Display>(_: T) -> Self {
        NotDirect
    }
}

/// Append the canonical text of `v` to `out`. `Ok(true)` when that text also parses back to
/// the same value (see [`super::reads_back_exactly`]); on `Err`, `out` holds partial text.
pub fn write<T: Serialize + ?Sized>(out: &mut String, v: &T) -> Result<bool, NotDirect> {
    let mut exact = true;
    v.serialize(Canon {
        out,
        exact: &mut exact,
    })?;
    Ok(exact)
}

struct Canon<'a> {
    out: &'a mut String,
    /// Cleared when a number would read back as another (see `reads_back_exactly`).
    exact: &'a mut bool,
}

impl Canon<'_> {
    fn number(self, n: serde_json::Number) {
        let start = self.out.len();
        write_number(self.out, &n);
        let text = &self.out[start..];
        let reads_back = if let Some(i) = n.as_i64() {
            i.unsigned_abs() <= (1u64 << 53)
        } else {
            !n.is_u64() && text.contains(['.', 'e'])
        };
        *self.exact &= reads_back;
    }
}

impl<'a> ser::Serializer for Canon<'a> {
    type Ok = ();
    type Error = NotDirect;
    type SerializeSeq = Seq<'a>;
    type SerializeTuple = Seq<'a>;
    type SerializeTupleStruct = Seq<'a>;
    type SerializeTupleVariant = ser::Impossible<(), NotDirect>;
    type SerializeMap = Object<'a>;
    type SerializeStruct = Object<'a>;
    type SerializeStructVariant = ser::Impossible<(), NotDirect>;

    fn serialize_bool(self, v: bool) -> Result<(), NotDirect> {
        self.out.push_str(if v { "true" } else { "false" });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), NotDirect> {
        self.serialize_i64(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result<(), NotDirect> {
        self.serialize_i64(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result<(), NotDirect> {
        self.serialize_i64(v.into())
    }
    fn serialize_i64(self, v: i64) -> Result<(), NotDirect> {
        self.number(v.into());
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<(), NotDirect> {
        self.serialize_u64(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<(), NotDirect> {
        self.serialize_u64(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<(), NotDirect> {
        self.serialize_u64(v.into())
    }
    fn serialize_u64(self, v: u64) -> Result<(), NotDirect> {
        self.number(v.into());
        Ok(())
    }
    fn serialize_f32(self, v: f32) -> Result<(), NotDirect> {
        self.serialize_f64(v.into())
    }
    fn serialize_f64(self, v: f64) -> Result<(), NotDirect> {
        // As `serde_json::to_value`: a non-finite float is `null`.
        match serde_json::Number::from_f64(v) {
            Some(n) => self.number(n),
            None => self.out.push_str("null"),
        }
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), NotDirect> {
        write_string(self.out, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), NotDirect> {
        write_string(self.out, v);
        Ok(())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), NotDirect> {
        Err(NotDirect)
    }
    fn serialize_none(self) -> Result<(), NotDirect> {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<(), NotDirect> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), NotDirect> {
        self.out.push_str("null");
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), NotDirect> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), NotDirect> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<(), NotDirect> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), NotDirect> {
        Err(NotDirect)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Seq<'a>, NotDirect> {
        self.out.push('[');
        Ok(Seq {
            out: self.out,
            exact: self.exact,
            first: true,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<Seq<'a>, NotDirect> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Seq<'a>, NotDirect> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, NotDirect> {
        Err(NotDirect)
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Object<'a>, NotDirect> {
        Ok(Object::new(self, len.unwrap_or(8)))
    }
    fn serialize_struct(self, _: &'static str, len: usize) -> Result<Object<'a>, NotDirect> {
        Ok(Object::new(self, len))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, NotDirect> {
        Err(NotDirect)
    }
}

struct Seq<'a> {
    out: &'a mut String,
    exact: &'a mut bool,
    first: bool,
}

impl Seq<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), NotDirect> {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        v.serialize(Canon {
            out: self.out,
            exact: self.exact,
        })
    }
}

impl ser::SerializeSeq for Seq<'_> {
    type Ok = ();
    type Error = NotDirect;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), NotDirect> {
        self.element(v)
    }
    fn end(self) -> Result<(), NotDirect> {
        self.out.push(']');
        Ok(())
    }
}

impl ser::SerializeTuple for Seq<'_> {
    type Ok = ();
    type Error = NotDirect;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), NotDirect> {
        self.element(v)
    }
    fn end(self) -> Result<(), NotDirect> {
        ser::SerializeSeq::end(self)
    }
}

impl ser::SerializeTupleStruct for Seq<'_> {
    type Ok = ();
    type Error = NotDirect;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), NotDirect> {
        self.element(v)
    }
    fn end(self) -> Result<(), NotDirect> {
        ser::SerializeSeq::end(self)
    }
}

/// An object being written: members go to `scratch` as they come (key, then value text);
/// `end` writes them to `out` in key order.
struct Object<'a> {
    out: &'a mut String,
    exact: &'a mut bool,
    scratch: String,
    /// Per member: where its key and its value text are in `scratch`.
    members: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>,
    key: Option<std::ops::Range<usize>>,
}

impl<'a> Object<'a> {
    fn new(c: Canon<'a>, len: usize) -> Self {
        Object {
            out: c.out,
            exact: c.exact,
            scratch: String::with_capacity(64 * len.max(1)),
            members: Vec::with_capacity(len),
            key: None,
        }
    }

    fn value<T: Serialize + ?Sized>(
        &mut self,
        key: std::ops::Range<usize>,
        v: &T,
    ) -> Result<(), NotDirect> {
        let start = self.scratch.len();
        v.serialize(Canon {
            out: &mut self.scratch,
            exact: self.exact,
        })?;
        self.members.push((key, start..self.scratch.len()));
        Ok(())
    }
}

impl ser::SerializeStruct for Object<'_> {
    type Ok = ();
    type Error = NotDirect;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), NotDirect> {
        let start = self.scratch.len();
        self.scratch.push_str(key);
        self.value(start..self.scratch.len(), v)
    }
    fn end(self) -> Result<(), NotDirect> {
        ser::SerializeMap::end(self)
    }
}

impl ser::SerializeMap for Object<'_> {
    type Ok = ();
    type Error = NotDirect;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), NotDirect> {
        let start = self.scratch.len();
        key.serialize(Canon {
            out: &mut self.scratch,
            exact: self.exact,
        })?;
        // A key is kept as written (quoted); one that needed escaping would sort by its
        // escaped form, so it is refused (the `Value` path sorts it right). So is a key that
        // is not a string.
        let text = &self.scratch[start..];
        let quoted = text.len() >= 2 && text.starts_with('"') && text.ends_with('"');
        if !quoted || text.contains('\\') {
            return Err(NotDirect);
        }
        self.key = Some(start + 1..self.scratch.len() - 1);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), NotDirect> {
        let key = self.key.take().ok_or(NotDirect)?;
        self.value(key, v)
    }
    fn end(mut self) -> Result<(), NotDirect> {
        let s = &self.scratch;
        let key = |r: &std::ops::Range<usize>| &s[r.clone()];
        // The same order as `write_object`: UTF-16 code units, which byte order gives
        // unless a key has a character at or above U+E000.
        if self
            .members
            .iter()
            .all(|(k, _)| key(k).bytes().all(|b| b < 0xEE))
        {
            self.members
                .sort_unstable_by(|a, b| key(&a.0).as_bytes().cmp(key(&b.0).as_bytes()));
        } else {
            self.members
                .sort_by(|a, b| key(&a.0).encode_utf16().cmp(key(&b.0).encode_utf16()));
        }
        // Two members with one key: `to_value` keeps the last; refuse rather than guess.
        if self
            .members
            .windows(2)
            .any(|w| key(&w[0].0) == key(&w[1].0))
        {
            return Err(NotDirect);
        }
        self.out.push('{');
        for (i, (k, v)) in self.members.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            write_string(self.out, key(k));
            self.out.push(':');
            self.out.push_str(&s[v.clone()]);
        }
        self.out.push('}');
        Ok(())
    }
}
