//! Full-text search over messages.
//!
//! The index lives in RAM only and is rebuilt from the decrypted store at start: messages are
//! encrypted at rest, and an on-disk index would leak their plaintext. Every document carries
//! its inbox key so that a search can be confined to the inboxes the caller may read.
//!
//! All methods block (indexing and commits can take a while), so async callers should run them
//! on `tokio::task::spawn_blocking`.

pub mod indexer;
mod tokenizer;

use std::ops::Bound;
use std::sync::{Arc, Mutex};

use tantivy::collector::TopDocs;
use tantivy::query::{
    BooleanQuery, ConstScoreQuery, Occur, Query, QueryParser, QueryParserError, RangeQuery,
    TermQuery,
};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TantivyDocument,
    TextFieldIndexing, TextOptions, Value,
};
use tantivy::snippet::{Snippet, SnippetGenerator};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, SegmentReader, TantivyError, Term};

/// Identifies whose a message is: mirrors the store's inbox key (kind, id) — kind 0 unrouted,
/// 1 number, 2 lease.
pub type InboxKey = (u8, u64);

/// A message as the index sees it.
#[derive(Debug, Clone, Copy)]
pub struct Document<'a> {
    pub message_id: u64,
    pub inbox: InboxKey,
    pub received_at_ms: i64,
    pub text: &'a str,
    pub from: &'a str,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub message_id: u64,
    pub score: f32,
    /// The best matching fragment, with matches wrapped in `<mark>…</mark>` and everything else
    /// HTML-escaped.
    pub snippet: String,
}

/// Which inboxes a search may return messages from.
#[derive(Debug, Clone)]
pub enum Filter {
    All,
    Inboxes(Vec<InboxKey>),
}

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("the query is invalid: {0}")]
    BadQuery(String),
    #[error("search index: {0}")]
    Index(String),
}

impl From<TantivyError> for SearchError {
    fn from(e: TantivyError) -> Self {
        SearchError::Index(e.to_string())
    }
}

/// Longer queries are pasted text, not searches; parsing them into thousands of clauses would
/// only burn CPU.
const MAX_QUERY_BYTES: usize = 1024;
/// The collector allocates for `limit` hits up front, so an absurd limit must not reach it.
const MAX_LIMIT: usize = 1000;
/// Counted in bytes by tantivy, so CJK snippets get about a third as many characters.
const SNIPPET_MAX_CHARS: usize = 150;
/// Indexing runs on one thread: the rebuild at start is a one-off, and the live add rate of an
/// SMS server is tiny. The budget is a little above tantivy's per-thread minimum (15 MB).
const WRITER_THREADS: usize = 1;
const WRITER_MEMORY_BYTES: usize = 48_000_000;

const F_MESSAGE_ID: &str = "message_id";
const F_INBOX: &str = "inbox";
const F_TEXT: &str = "text";
const F_FROM: &str = "from";
const F_RECEIVED_AT: &str = "received_at";

#[derive(Clone, Copy)]
struct Fields {
    message_id: Field,
    inbox: Field,
    text: Field,
    from: Field,
    received_at: Field,
}

struct Inner {
    fields: Fields,
    reader: IndexReader,
    parser: QueryParser,
    // tantivy permits a single writer per index.
    writer: Mutex<IndexWriter>,
}

/// A cheap-to-clone handle on the in-memory search index.
#[derive(Clone)]
pub struct SearchIndex {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchIndex")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl SearchIndex {
    pub fn new() -> Result<Self, SearchError> {
        let mut builder = Schema::builder();
        let text_options = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(tokenizer::NAME)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        );
        let fields = Fields {
            message_id: builder.add_u64_field(F_MESSAGE_ID, INDEXED | STORED | FAST),
            inbox: builder.add_text_field(F_INBOX, STRING),
            // Stored (in RAM, like everything else here) because snippets need the text back.
            text: builder.add_text_field(F_TEXT, text_options.clone().set_stored()),
            from: builder.add_text_field(F_FROM, text_options),
            received_at: builder.add_i64_field(F_RECEIVED_AT, FAST),
        };
        let index = Index::create_in_ram(builder.build());
        index
            .tokenizers()
            .register(tokenizer::NAME, tokenizer::analyzer());

        let writer = index.writer_with_num_threads(WRITER_THREADS, WRITER_MEMORY_BYTES)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let mut parser = QueryParser::for_index(&index, vec![fields.text, fields.from]);
        // Users expect every word they type to narrow the results, as in web search.
        parser.set_conjunction_by_default();

        Ok(SearchIndex {
            inner: Arc::new(Inner {
                fields,
                reader,
                parser,
                writer: Mutex::new(writer),
            }),
        })
    }

    /// Adds documents, replacing any indexed document with the same `message_id`; visible to
    /// searches after the next [`commit`](Self::commit).
    pub fn add(&self, docs: &[Document<'_>]) -> Result<(), SearchError> {
        let f = self.inner.fields;
        let writer = self.writer()?;
        for doc in docs {
            // Deletes only hit documents added before them, so this leaves the new one alone
            // and makes re-indexing a message idempotent.
            writer.delete_term(Term::from_field_u64(f.message_id, doc.message_id));
            let mut d = TantivyDocument::new();
            d.add_u64(f.message_id, doc.message_id);
            d.add_text(f.inbox, inbox_term_text(doc.inbox));
            d.add_text(f.text, doc.text);
            d.add_text(f.from, doc.from);
            d.add_i64(f.received_at, doc.received_at_ms);
            writer.add_document(d)?;
        }
        Ok(())
    }

    /// Removes documents; takes effect at the next [`commit`](Self::commit).
    pub fn delete(&self, message_ids: &[u64]) -> Result<(), SearchError> {
        let field = self.inner.fields.message_id;
        let writer = self.writer()?;
        for &id in message_ids {
            writer.delete_term(Term::from_field_u64(field, id));
        }
        Ok(())
    }

    /// Makes adds and deletes visible to searches.
    pub fn commit(&self) -> Result<(), SearchError> {
        let mut writer = self.writer()?;
        writer.commit()?;
        // Reloaded under the writer lock so that concurrent commits publish in commit order.
        self.inner.reader.reload()?;
        Ok(())
    }

    /// Ranked hits (BM25), newest first among equal scores, at most `limit` (capped at 1000).
    pub fn search(
        &self,
        query: &str,
        filter: &Filter,
        limit: usize,
    ) -> Result<Vec<Hit>, SearchError> {
        self.search_before(query, filter, limit, None)
    }

    /// Like [`search`](Self::search), restricted to messages with `message_id < before` when
    /// `before` is given.
    pub fn search_before(
        &self,
        query: &str,
        filter: &Filter,
        limit: usize,
        before: Option<u64>,
    ) -> Result<Vec<Hit>, SearchError> {
        let limit = limit.min(MAX_LIMIT);
        if query.len() > MAX_QUERY_BYTES {
            return Err(SearchError::BadQuery(format!(
                "longer than {MAX_QUERY_BYTES} bytes"
            )));
        }
        if limit == 0 || query.trim().is_empty() || before == Some(0) {
            return Ok(Vec::new());
        }
        let f = self.inner.fields;
        let user_query = self.parse(query)?;

        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, user_query.box_clone())];
        if let Filter::Inboxes(inboxes) = filter {
            if inboxes.is_empty() {
                return Ok(Vec::new());
            }
            let mut terms: Vec<String> = inboxes.iter().map(|&k| inbox_term_text(k)).collect();
            terms.sort_unstable();
            terms.dedup();
            let any_inbox = BooleanQuery::new(
                terms
                    .iter()
                    .map(|t| {
                        let q = TermQuery::new(
                            Term::from_field_text(f.inbox, t),
                            IndexRecordOption::Basic,
                        );
                        (Occur::Should, Box::new(q) as Box<dyn Query>)
                    })
                    .collect(),
            );
            clauses.push((Occur::Must, unscored(any_inbox)));
        }
        if let Some(before) = before {
            let range = RangeQuery::new(
                Bound::Unbounded,
                Bound::Excluded(Term::from_field_u64(f.message_id, before)),
            );
            clauses.push((Occur::Must, unscored(range)));
        }
        let query = BooleanQuery::new(clauses);

        let searcher = self.inner.reader.searcher();
        let collector = TopDocs::with_limit(limit).tweak_score(|segment: &SegmentReader| {
            let received_at = segment
                .fast_fields()
                .column_first_or_default::<i64>(F_RECEIVED_AT)
                .ok();
            move |doc, score| {
                let at = received_at.as_ref().map_or(0, |col| col.get_val(doc));
                (score, at)
            }
        });
        let top = searcher.search(&query, &collector)?;
        if top.is_empty() {
            return Ok(Vec::new());
        }

        let mut snippets = SnippetGenerator::create(&searcher, &*user_query, f.text)?;
        snippets.set_max_num_chars(SNIPPET_MAX_CHARS);
        let mut hits = Vec::with_capacity(top.len());
        for ((score, _), address) in top {
            let doc: TantivyDocument = searcher.doc(address)?;
            let Some(message_id) = doc.get_first(f.message_id).and_then(|v| v.as_u64()) else {
                return Err(SearchError::Index("document without a message id".into()));
            };
            let text = doc.get_first(f.text).and_then(|v| v.as_str()).unwrap_or("");
            hits.push(Hit {
                message_id,
                score,
                snippet: snippet_html(&snippets.snippet(text), text),
            });
        }
        Ok(hits)
    }

    /// Live documents as of the last commit.
    pub fn len(&self) -> u64 {
        self.inner.reader.searcher().num_docs()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn writer(&self) -> Result<std::sync::MutexGuard<'_, IndexWriter>, SearchError> {
        self.inner
            .writer
            .lock()
            .map_err(|_| SearchError::Index("writer poisoned by an earlier panic".into()))
    }

    /// Strict parsing first, so operators work for those who use them; on a syntax error, or a
    /// "field" that is really a word followed by a colon ("code: 1234"), the query is retried as
    /// plain words, since SMS searchers paste text with quotes, brackets and colons in it.
    fn parse(&self, query: &str) -> Result<Box<dyn Query>, SearchError> {
        let error = if within_budget(query) {
            match self.inner.parser.parse_query(query) {
                Ok(q) => return Ok(q),
                Err(e) => e,
            }
        } else {
            // Ranges, sets, regexes and wildcards walk whole term dictionaries or
            // posting lists, once per clause: a guest could make every search scan the
            // index dozens of times. Nobody needs them to find an SMS; as words they
            // still find what was typed.
            QueryParserError::SyntaxError("operators that scan the whole index".into())
        };
        if !matches!(
            error,
            QueryParserError::SyntaxError(_) | QueryParserError::FieldDoesNotExist(_)
        ) {
            return Err(SearchError::BadQuery(error.to_string()));
        }
        // Lowercasing disarms AND/OR/NOT; the analyzer lowercases terms anyway.
        let words: String = query
            .chars()
            .flat_map(|c| {
                let keep = c.is_alphanumeric();
                c.to_lowercase().map(move |l| if keep { l } else { ' ' })
            })
            .collect();
        self.inner
            .parser
            .parse_query(&words)
            .map_err(|_| SearchError::BadQuery(error.to_string()))
    }
}

/// Whether a query uses only what costs about as much as its words: terms, phrases,
/// fields and boolean operators (true, too, for what does not parse: it becomes words).
fn within_budget(query: &str) -> bool {
    use tantivy::query_grammar::{UserInputAst, UserInputLeaf};
    fn cheap(ast: &UserInputAst) -> bool {
        match ast {
            UserInputAst::Clause(clauses) => clauses.iter().all(|(_, clause)| cheap(clause)),
            UserInputAst::Boost(inner, _) => cheap(inner),
            UserInputAst::Leaf(leaf) => match leaf.as_ref() {
                UserInputLeaf::Literal(literal) => !literal.prefix,
                UserInputLeaf::All
                | UserInputLeaf::Range { .. }
                | UserInputLeaf::Set { .. }
                | UserInputLeaf::Exists { .. }
                | UserInputLeaf::Regex { .. } => false,
            },
        }
    }
    tantivy::query_grammar::parse_query(query).map_or(true, |ast| cheap(&ast))
}

/// Filters and bounds must not shift BM25 scores, or hits would rank differently per inbox.
fn unscored(query: impl Query) -> Box<dyn Query> {
    Box::new(ConstScoreQuery::new(Box::new(query), 0.0))
}

fn inbox_term_text((kind, id): InboxKey) -> String {
    format!("{kind}:{id}")
}

/// Longest run of closing punctuation appended after the fragment's last token.
const SNIPPET_TAIL_CHARS: usize = 8;

/// tantivy's own `to_html` uses `<b>` and leaves adjacent ranges separate, which would mark
/// each CJK character on its own. An ellipsis shows where the fragment cuts the message.
fn snippet_html(snippet: &Snippet, text: &str) -> String {
    if snippet.is_empty() {
        // The match was in the sender only: show the start of the message instead.
        let trimmed = text.trim();
        let head = truncate_chars(trimmed, SNIPPET_MAX_CHARS);
        let mut html = crate::html::escape(head);
        if head.len() < trimmed.len() {
            html.push('…');
        }
        return html;
    }
    let range = snippet.fragment_range();
    // The fragment ends with its last token, which would cut "12." or "</b>" short.
    let tail: usize = text
        .get(range.end..)
        .unwrap_or("")
        .chars()
        .take_while(|c| !c.is_alphanumeric() && !c.is_whitespace())
        .take(SNIPPET_TAIL_CHARS)
        .map(char::len_utf8)
        .sum();
    let end = range.end + tail;
    let fragment = text.get(range.start..end).unwrap_or(snippet.fragment());

    let mut ranges = snippet.highlighted().to_vec();
    ranges.sort_by_key(|r| (r.start, r.end));
    let mut html = String::with_capacity(fragment.len() + 32);
    if !text.get(..range.start).unwrap_or("").trim().is_empty() {
        html.push('…');
    }
    let mut at = 0;
    let mut i = 0;
    while i < ranges.len() {
        let start = ranges[i].start.max(at);
        let mut end = ranges[i].end;
        i += 1;
        while i < ranges.len() && ranges[i].start <= end {
            end = end.max(ranges[i].end);
            i += 1;
        }
        let (Some(before), Some(marked)) = (fragment.get(at..start), fragment.get(start..end))
        else {
            continue;
        };
        html.push_str(&crate::html::escape(before));
        html.push_str("<mark>");
        html.push_str(&crate::html::escape(marked));
        html.push_str("</mark>");
        at = end;
    }
    html.push_str(&crate::html::escape(fragment.get(at..).unwrap_or("")));
    if !text.get(end..).unwrap_or("").trim().is_empty() {
        html.push('…');
    }
    html
}

fn truncate_chars(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((cut, _)) => &text[..cut],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(message_id: u64, inbox: InboxKey, text: &str) -> Document<'_> {
        Document {
            message_id,
            inbox,
            received_at_ms: i64::try_from(message_id).unwrap_or(0) * 1000,
            text,
            from: "+15550100",
        }
    }

    fn index_with(docs: &[Document<'_>]) -> SearchIndex {
        let index = SearchIndex::new().unwrap();
        index.add(docs).unwrap();
        index.commit().unwrap();
        index
    }

    fn ids(hits: &[Hit]) -> Vec<u64> {
        hits.iter().map(|h| h.message_id).collect()
    }

    fn find(index: &SearchIndex, query: &str) -> Vec<u64> {
        ids(&index.search(query, &Filter::All, 10).unwrap())
    }

    #[test]
    fn finds_by_word_ranked_with_marked_escaped_snippet() {
        let index = index_with(&[
            doc(1, (1, 1), "Your parcel is on its way"),
            // Same length, so only the term frequency separates them; the older one must win.
            doc(2, (1, 1), "Code: your code is 12 <script>x</script>"),
            doc(3, (1, 1), "Your login code is 12 <script>x</script>"),
        ]);
        assert_eq!(index.len(), 3);
        let hits = index.search("code", &Filter::All, 10).unwrap();
        assert_eq!(ids(&hits), [2, 3]);
        assert!(hits[0].score > hits[1].score);
        assert_eq!(
            hits[0].snippet,
            "<mark>Code</mark>: your <mark>code</mark> is 12 &lt;script&gt;x&lt;/script&gt;"
        );
        assert_eq!(
            hits[1].snippet,
            "Your login <mark>code</mark> is 12 &lt;script&gt;x&lt;/script&gt;"
        );
        assert!(index.search("pizza", &Filter::All, 10).unwrap().is_empty());
    }

    #[test]
    fn long_messages_get_a_bounded_snippet_around_the_match() {
        let filler = "lorem ipsum dolor sit amet ".repeat(10);
        let text = format!("{filler}your code is 4242. {filler}");
        let index = index_with(&[doc(1, (1, 1), &text)]);
        let hit = &index.search("code", &Filter::All, 1).unwrap()[0];
        assert!(hit.snippet.starts_with('…'), "{}", hit.snippet);
        assert!(hit.snippet.ends_with('…'), "{}", hit.snippet);
        assert!(hit.snippet.contains("<mark>code</mark>"));
        assert!(hit.snippet.chars().count() < SNIPPET_MAX_CHARS + 30);
    }

    #[test]
    fn words_are_anded_and_phrases_work() {
        let index = index_with(&[
            doc(1, (1, 1), "your bank code"),
            doc(2, (1, 1), "code for your bank"),
            doc(3, (1, 1), "bank holiday"),
        ]);
        let mut both = find(&index, "bank code");
        both.sort_unstable();
        assert_eq!(both, [1, 2]);
        assert_eq!(find(&index, "\"bank code\""), [1]);
    }

    #[test]
    fn equal_scores_come_newest_first() {
        let index = index_with(&[
            doc(5, (1, 1), "same words"),
            doc(9, (1, 1), "same words"),
            doc(7, (1, 1), "same words"),
        ]);
        assert_eq!(find(&index, "words"), [9, 7, 5]);
        let older = index
            .search_before("words", &Filter::All, 10, Some(9))
            .unwrap();
        assert_eq!(ids(&older), [7, 5]);
        assert_eq!(find(&index, "words").len(), 3);
        assert_eq!(ids(&index.search("words", &Filter::All, 1).unwrap()), [9]);
    }

    #[test]
    fn matches_the_sender_too() {
        let index = index_with(&[Document {
            from: "ACME Bank",
            ..doc(1, (1, 1), "a < b")
        }]);
        let hits = index.search("acme", &Filter::All, 10).unwrap();
        assert_eq!(ids(&hits), [1]);
        assert_eq!(hits[0].snippet, "a &lt; b");
    }

    #[test]
    fn filter_confines_results_to_inboxes() {
        let index = index_with(&[doc(1, (2, 7), "secret code"), doc(2, (1, 7), "code")]);
        let search = |filter: Filter| ids(&index.search("code", &filter, 10).unwrap());
        assert_eq!(search(Filter::Inboxes(vec![(2, 8)])), Vec::<u64>::new());
        assert_eq!(search(Filter::Inboxes(vec![(2, 7)])), [1]);
        assert_eq!(search(Filter::Inboxes(vec![(2, 8), (1, 7)])), [2]);
        assert_eq!(search(Filter::Inboxes(vec![])), Vec::<u64>::new());
        let mut all = search(Filter::All);
        all.sort_unstable();
        assert_eq!(all, [1, 2]);
        // Naming the inbox field in the query cannot widen the filter.
        let widened = index
            .search("code inbox:\"2:7\"", &Filter::Inboxes(vec![(1, 7)]), 10)
            .unwrap();
        assert!(widened.is_empty());
    }

    #[test]
    fn filter_does_not_change_scores() {
        let index = index_with(&[doc(1, (2, 7), "code"), doc(2, (1, 1), "other")]);
        let all = index.search("code", &Filter::All, 10).unwrap();
        let one = index
            .search("code", &Filter::Inboxes(vec![(2, 7)]), 10)
            .unwrap();
        assert_eq!(all, one);
    }

    #[test]
    fn delete_and_readd_take_effect_at_commit() {
        let index = index_with(&[doc(1, (1, 1), "hello"), doc(2, (1, 1), "hello")]);
        index.delete(&[1]).unwrap();
        assert_eq!(index.len(), 2);
        index.commit().unwrap();
        assert_eq!(index.len(), 1);
        assert_eq!(find(&index, "hello"), [2]);

        // Re-adding a message replaces it instead of duplicating it.
        index.add(&[doc(2, (1, 1), "goodbye")]).unwrap();
        index.commit().unwrap();
        assert_eq!(index.len(), 1);
        assert!(find(&index, "hello").is_empty());
        assert_eq!(find(&index, "goodbye"), [2]);
    }

    #[test]
    fn cjk_and_accented_text() {
        let index = index_with(&[
            doc(1, (1, 1), "您的验证码是123456，请勿泄露"),
            doc(2, (1, 1), "認証コードは 482913 です"),
            doc(3, (1, 1), "[Web발신] 인증번호는 [771204]입니다"),
            doc(4, (1, 1), "Tu código es 5521"),
            doc(5, (1, 1), "验码证"),
        ]);
        assert_eq!(find(&index, "验证码"), [1]);
        assert_eq!(find(&index, "認証コード"), [2]);
        assert_eq!(find(&index, "인증번호"), [3]);
        assert_eq!(find(&index, "CODIGO"), [4]);
        assert_eq!(find(&index, "código"), [4]);
        assert_eq!(find(&index, "123456"), [1]);

        let hit = &index.search("验证码", &Filter::All, 1).unwrap()[0];
        assert!(
            hit.snippet.contains("<mark>验证码</mark>"),
            "{}",
            hit.snippet
        );
        let hit = &index.search("codigo", &Filter::All, 1).unwrap()[0];
        assert_eq!(hit.snippet, "Tu <mark>código</mark> es 5521");
    }

    /// Ranges, sets, regexes and wildcards would walk the whole index per clause; they
    /// are read as the words they contain, so they match only what those words match.
    #[test]
    fn operators_that_scan_the_index_are_read_as_words() {
        let index = index_with(&[
            doc(1, (1, 1), "Your Acme code is 1234"),
            doc(2, (1, 1), "Zeta login code 9876"),
        ]);
        for query in [
            "text:[0 TO z]",
            "text:IN [acme zeta]",
            "*",
            "from:*",
            "acm*",
        ] {
            assert!(find(&index, query).is_empty(), "{query} matched");
        }
        // The words themselves still work, operators included.
        assert_eq!(find(&index, "acme"), [1]);
        assert_eq!(find(&index, "code -zeta"), [1]);
        assert_eq!(find(&index, "\"login code\""), [2]);
    }

    #[test]
    fn garbage_queries_never_panic() {
        let index = index_with(&[doc(1, (1, 1), "hello (world) \"quoted\" code: 42")]);
        let long = "hello ".repeat(10 * 1024 / 6);
        let nasty = [
            "\"unterminated",
            "AND AND",
            "((((",
            "))))",
            "",
            "   ",
            long.as_str(),
            "-hello",
            "message_id:abc",
            "nosuchfield:x",
            "text:[a TO",
            "*",
            "\"\"",
            "\\",
            "hello^",
            "~~~",
            "+-+-",
            "\u{0}\u{FFFF}",
            "\"hello\"*",
        ];
        for q in nasty {
            match index.search(q, &Filter::All, 10) {
                Ok(_) | Err(SearchError::BadQuery(_)) => {}
                Err(e) => panic!("{q:?}: {e}"),
            }
        }
        assert!(matches!(
            index.search(&long, &Filter::All, 10),
            Err(SearchError::BadQuery(_))
        ));
        assert!(index.search("", &Filter::All, 10).unwrap().is_empty());
        assert!(index.search("hello", &Filter::All, 0).unwrap().is_empty());
        assert!(
            index
                .search("hello", &Filter::All, usize::MAX)
                .unwrap()
                .len()
                == 1
        );
        // Odd characters fall back to a plain-words search rather than an error.
        assert_eq!(find(&index, "\"unterminated hello"), Vec::<u64>::new());
        assert_eq!(find(&index, "code: 42"), [1]);
        assert_eq!(find(&index, "(world"), [1]);
    }

    #[test]
    fn handle_is_shared_across_threads() {
        let index = SearchIndex::new().unwrap();
        let writers: Vec<_> = (0..4u64)
            .map(|t| {
                let index = index.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        let text = format!("thread{t} message {i}");
                        index.add(&[doc(t * 1000 + i, (1, t), &text)]).unwrap();
                    }
                    index.commit().unwrap();
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        assert_eq!(index.len(), 200);
        let hits = index
            .search("message", &Filter::Inboxes(vec![(1, 2)]), 1000)
            .unwrap();
        assert_eq!(hits.len(), 50);
    }
}
