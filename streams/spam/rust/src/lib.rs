//! `streams.spam._native`: the spam filter's hot paths, one call per mail (a call per word would cost
//! more in crossing than it saves). The Python modules stay the reference and the fallback:
//! `streams.spam.textprints`, `classifier` and `lsh` pick these up when the extension is built.

mod classify;
mod header;
mod lsh;
mod markup;
mod mixhash;
mod oddwords;
mod table;
mod text;
mod urls;

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyIndexError, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

/// A mail's classifier tokens, made into Python strings only when read (scoring reads five).
#[pyclass(frozen, sequence, module = "streams.spam._native")]
struct Tokens {
    items: text::TokenText,
}

#[pymethods]
impl Tokens {
    fn __len__(&self) -> usize {
        self.items.len()
    }

    fn __getitem__(&self, index: isize) -> PyResult<&str> {
        let at = if index < 0 { index + self.items.len() as isize } else { index };
        usize::try_from(at).ok().and_then(|at| self.items.get(at))
            .ok_or_else(|| PyIndexError::new_err("token index out of range"))
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let all: Vec<&str> = (0..self.items.len()).filter_map(|at| self.items.get(at)).collect();
        PyList::new(py, all)?.try_iter().map(Bound::into_any)
    }
}

/// The hashes of an `array("Q")` (an empty one has no aligned buffer to read).
fn hashes_of(tokens: &Bound<'_, PyAny>) -> PyResult<Vec<u64>> {
    if tokens.len()? == 0 {
        return Ok(Vec::new());
    }
    PyBuffer::<u64>::get(tokens)?.to_vec(tokens.py())
}

fn u64_bytes(values: &[u64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_ne_bytes()).collect()
}

fn signature_of(py: Python<'_>, sig: &PyBuffer<u32>) -> PyResult<lsh::Sig> {
    let bins = sig.to_vec(py)?;
    bins.try_into().map_err(|bins: Vec<u32>| {
        PyValueError::new_err(format!("a signature has {} bins, not {}", text::BINS, bins.len()))
    })
}

/// (tokens, their hashes as native uint64 bytes, the text signature as native uint32 bytes or None):
/// see `textprints.text_prints_py`, which this equals.
#[pyfunction]
fn text_prints<'py>(py: Python<'py>, subject: &str, text: &str, extra: Vec<PyBackedStr>, skeletons: Vec<PyBackedStr>,
                    min_shingles: usize) -> (Tokens, Bound<'py, PyBytes>, Option<Bound<'py, PyBytes>>) {
    let extra: Vec<&str> = extra.iter().map(|s| &**s).collect();
    let skeletons: Vec<&str> = skeletons.iter().map(|s| &**s).collect();
    let prints = text::text_prints(subject, text, &extra, &skeletons, min_shingles);
    let signature = prints.signature.map(|sig| {
        let data: Vec<u8> = sig.iter().flat_map(|v| v.to_ne_bytes()).collect();
        PyBytes::new(py, &data)
    });
    (Tokens { items: prints.tokens }, PyBytes::new(py, &u64_bytes(&prints.hashes)), signature)
}

/// (text, URLs) of folded text: `normalize.extract`'s `_URL_SPLIT_RE` split and white-space collapse.
#[pyfunction]
fn split_urls(text: &str) -> (String, Vec<&str>) {
    text::split_urls(text)
}

/// (text, link targets) of ASCII markup, entities still escaped: `normalize.html_to_text` but for
/// its `html.unescape`.
#[pyfunction]
fn html_to_text(markup: &str) -> PyResult<(String, Vec<String>)> {
    if !markup.is_ascii() {
        return Err(PyValueError::new_err("html_to_text takes ASCII markup (Python's regexes do the rest)"));
    }
    Ok(markup::html_to_text(markup))
}

/// (fields, Content-* fields, lines that are no field) of an ASCII header block: `mime._set_headers`'s
/// splitting, each field as (name, value).
#[pyfunction]
#[allow(clippy::type_complexity)]
fn header_fields(head: &str) -> PyResult<(Vec<(&str, &str)>, Vec<(&str, &str)>, Vec<&str>)> {
    if !head.is_ascii() {
        return Err(PyValueError::new_err("header_fields takes an ASCII header block"));
    }
    let found = header::fields(head);
    Ok((found.all, found.content, found.bad))
}

/// `normalize.raw_headers`: (name, value) fields by lower-cased name, values as given. Names are
/// RFC 5322 ftext (ASCII: `mime._FIELD_RE`), so ASCII lower case is Python's.
#[pyfunction]
fn group_fields<'py>(py: Python<'py>, fields: &Bound<'py, PyList>) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    for field in fields.iter() {
        let field = field.cast_into::<PyTuple>()?;
        let (name, value) = (field.get_item(0)?, field.get_item(1)?);
        let name = name.cast::<PyString>()?.to_str()?;
        let key = PyString::new(py, &name.to_ascii_lowercase());
        match out.get_item(&key)? {
            Some(values) => values.cast_into::<PyList>()?.append(value)?,
            None => out.set_item(key, PyList::new(py, [value])?)?,
        }
    }
    Ok(out)
}

/// `normalize.unfold` of each value.
#[pyfunction]
fn unfold_all(values: Vec<PyBackedStr>) -> Vec<String> {
    values.iter().map(|v| header::unfold(v)).collect()
}

/// `fingerprint.words` (the native word cutter, for tests).
#[pyfunction]
fn words(text: &str) -> Vec<String> {
    text::words(&text::fold_digits(text)).into_iter().map(str::to_owned).collect()
}

/// `classifier.TokenClassifier`'s counts and classify; `classify` gives (prob, clues, places): the
/// clues packed as native "dddQ" records, most decisive first, and each one's token's place in the
/// tokens given, as native uint32.
#[pyclass(module = "streams.spam._native")]
struct TokenCounts {
    inner: classify::Classifier,
}

#[pymethods]
impl TokenCounts {
    #[new]
    fn new(strength: f64, unknown_prob: f64, max_tokens: usize, min_strength: f64) -> Self {
        Self { inner: classify::Classifier::new(strength, unknown_prob, max_tokens, min_strength) }
    }

    #[getter]
    fn nspam(&self) -> i64 {
        self.inner.nspam
    }

    #[getter]
    fn nham(&self) -> i64 {
        self.inner.nham
    }

    fn learn(&mut self, tokens: &Bound<'_, PyAny>, is_spam: bool, weight: i64) -> PyResult<()> {
        self.inner.learn(&hashes_of(tokens)?, is_spam, weight);
        Ok(())
    }

    fn classify<'py>(&mut self, py: Python<'py>, tokens: &Bound<'py, PyAny>)
                     -> PyResult<(f64, Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
        let (prob, used) = self.inner.classify(&hashes_of(tokens)?);
        let mut clues = Vec::with_capacity(used.len() * 32);
        let mut places = Vec::with_capacity(used.len() * 4);
        for ((dist, ln_p, ln_q, tok), at) in used {
            clues.extend(dist.to_ne_bytes().into_iter().chain(ln_p.to_ne_bytes()).chain(ln_q.to_ne_bytes())
                .chain(tok.to_ne_bytes()));
            places.extend(at.to_ne_bytes());
        }
        Ok((prob, PyBytes::new(py, &clues), PyBytes::new(py, &places)))
    }
}

/// `lsh.SignatureIndex`; signatures are `array("I")`s (any buffer of 128 uint32).
#[pyclass(module = "streams.spam._native")]
struct SignatureIndex {
    inner: lsh::SignatureIndex,
}

#[pymethods]
impl SignatureIndex {
    #[new]
    fn new() -> Self {
        Self { inner: lsh::SignatureIndex::new() }
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn add(&mut self, py: Python<'_>, key: &str, sig: PyBuffer<u32>) -> PyResult<()> {
        self.inner.add(key, &signature_of(py, &sig)?);
        Ok(())
    }

    fn discard(&mut self, key: &str) {
        self.inner.discard(key);
    }

    fn candidates(&self, py: Python<'_>, sig: PyBuffer<u32>, limit: usize) -> PyResult<Vec<(String, f64)>> {
        let sig = signature_of(py, &sig)?;
        Ok(self.inner.candidates(&sig, limit).into_iter().map(|(k, s)| (k.to_owned(), s)).collect())
    }
}

/// `urls.normalize_url`'s simple path, with the tracking parameters it drops.
#[pyclass(frozen, module = "streams.spam._native")]
struct UrlForms {
    tracking: urls::TrackingParams,
}

#[pymethods]
impl UrlForms {
    #[new]
    fn new(names: Vec<String>, prefixes: Vec<String>) -> Self {
        Self { tracking: urls::TrackingParams { names: names.into_iter().collect(), prefixes } }
    }

    /// The normalised form of a simple URL, or None where Python's general path must decide.
    fn simple(&self, url: &str) -> Option<String> {
        urls::simple_url(url, &self.tracking)
    }

    /// `urls.url_skeleton` of a normalised URL, or None where the Python code must decide.
    #[staticmethod]
    fn skeleton(normalized: &str) -> Option<String> {
        urls::skeleton(normalized)
    }
}

/// `rules._odd_words` on ASCII text, with the bait words it looks for.
#[pyclass(frozen, module = "streams.spam._native")]
struct OddWords {
    bait: std::collections::HashSet<Vec<u8>>,
}

#[pymethods]
impl OddWords {
    #[new]
    fn new(bait: Vec<String>) -> Self {
        Self { bait: bait.into_iter().map(String::into_bytes).collect() }
    }

    /// (amounts, percentages, mixed words, a disguised bait word) of ASCII text; None for other text.
    fn scan(&self, text: &str) -> Option<(u32, u32, u32, bool)> {
        if !text.is_ascii() {
            return None;
        }
        let c = oddwords::odd_words(text.as_bytes(), &self.bait);
        Some((c.money, c.percent, c.mixed, c.disguised_bait))
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(text_prints, m)?)?;
    m.add_function(wrap_pyfunction!(words, m)?)?;
    m.add_function(wrap_pyfunction!(split_urls, m)?)?;
    m.add_function(wrap_pyfunction!(header_fields, m)?)?;
    m.add_function(wrap_pyfunction!(unfold_all, m)?)?;
    m.add_function(wrap_pyfunction!(group_fields, m)?)?;
    m.add_function(wrap_pyfunction!(html_to_text, m)?)?;
    m.add_class::<Tokens>()?;
    m.add_class::<TokenCounts>()?;
    m.add_class::<SignatureIndex>()?;
    m.add_class::<UrlForms>()?;
    m.add_class::<OddWords>()?;
    Ok(())
}
