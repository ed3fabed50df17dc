//! Corpus test for one-time-code extraction: precision, recall and service accuracy
//! over a hand-written multilingual set of OTP and non-OTP messages.

use std::collections::BTreeMap;

use burnbox::domain::otp;

struct Row {
    line: usize,
    lang: String,
    sender: String,
    code: Option<String>,
    service: Expected,
    text: String,
}

enum Expected {
    Any,
    None,
    Named(String),
}

fn unescape(s: &str) -> String {
    s.replace("\\n", "\n")
}

fn rows() -> Vec<Row> {
    let data = include_str!("data/otp_corpus.tsv");
    let mut out = Vec::new();
    for (idx, line) in data.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.splitn(5, '\t').collect();
        assert_eq!(
            cols.len(),
            5,
            "line {}: expected 5 columns: {line}",
            idx + 1
        );
        let code = match cols[2] {
            "-" => None,
            c => Some(c.to_string()),
        };
        let service = match cols[3] {
            "*" => Expected::Any,
            "-" => Expected::None,
            s => Expected::Named(s.to_string()),
        };
        out.push(Row {
            line: idx + 1,
            lang: cols[0].to_string(),
            sender: cols[1].to_string(),
            code,
            service,
            text: unescape(cols[4]),
        });
    }
    out
}

#[derive(Default)]
struct Tally {
    rows: usize,
    otp: usize,
    tp: usize,
    fp: usize,
    fn_: usize,
}

#[test]
fn corpus_precision_recall_and_service() {
    let rows = rows();
    let mut total = Tally::default();
    let mut per_lang: BTreeMap<String, Tally> = BTreeMap::new();
    let mut svc_checked = 0usize;
    let mut svc_right = 0usize;
    let mut mismatches = Vec::new();

    for row in &rows {
        let got = otp::extract(&row.text, &row.sender);
        let got_code = got.as_ref().map(|c| c.code.clone());
        let lang = per_lang.entry(row.lang.clone()).or_default();
        lang.rows += 1;
        total.rows += 1;
        if row.code.is_some() {
            lang.otp += 1;
            total.otp += 1;
        }
        match (&row.code, &got_code) {
            (Some(want), Some(have)) if want == have => {
                lang.tp += 1;
                total.tp += 1;
            }
            (Some(_), Some(_)) => {
                lang.fp += 1;
                lang.fn_ += 1;
                total.fp += 1;
                total.fn_ += 1;
            }
            (Some(_), None) => {
                lang.fn_ += 1;
                total.fn_ += 1;
            }
            (None, Some(_)) => {
                lang.fp += 1;
                total.fp += 1;
            }
            (None, None) => {}
        }
        if row.code != got_code {
            mismatches.push(format!(
                "line {} [{}] code: want {:?}, got {:?} :: {}",
                row.line, row.lang, row.code, got_code, row.text
            ));
        }

        let got_service = match &got {
            Some(c) => c.service.clone(),
            None => otp::service(&row.text, &row.sender),
        };
        let want_service = match &row.service {
            Expected::Any => continue,
            Expected::None => None,
            Expected::Named(s) => Some(s.clone()),
        };
        svc_checked += 1;
        if want_service == got_service {
            svc_right += 1;
        } else {
            mismatches.push(format!(
                "line {} [{}] service: want {:?}, got {:?} :: {}",
                row.line, row.lang, want_service, got_service, row.text
            ));
        }
    }

    let ratio = |a: usize, b: usize| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    let precision = ratio(total.tp, total.tp + total.fp);
    let recall = ratio(total.tp, total.tp + total.fn_);
    let service_accuracy = ratio(svc_right, svc_checked);

    eprintln!("lang  rows  otp   tp   fp   fn");
    for (lang, t) in &per_lang {
        eprintln!(
            "{lang:<5} {:>4} {:>4} {:>4} {:>4} {:>4}",
            t.rows, t.otp, t.tp, t.fp, t.fn_
        );
    }
    for m in &mismatches {
        eprintln!("MISMATCH {m}");
    }
    eprintln!(
        "rows={} languages={} otp_rows={} non_otp_rows={} tp={} fp={} fn={}",
        total.rows,
        per_lang.len(),
        total.otp,
        total.rows - total.otp,
        total.tp,
        total.fp,
        total.fn_
    );
    eprintln!(
        "precision={precision:.4} recall={recall:.4} service_accuracy={service_accuracy:.4} ({svc_right}/{svc_checked})"
    );

    assert!(total.rows >= 300, "corpus has only {} rows", total.rows);
    assert!(
        per_lang.len() >= 10,
        "corpus has only {} languages",
        per_lang.len()
    );
    assert!(precision >= 0.97, "precision {precision:.4} < 0.97");
    assert!(recall >= 0.95, "recall {recall:.4} < 0.95");
    assert!(
        service_accuracy >= 0.9,
        "service accuracy {service_accuracy:.4} < 0.9"
    );
}
