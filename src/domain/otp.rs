//! One-time-code extraction from SMS text.
//!
//! [`extract`] finds the one-time code (OTP) in a message, if any, and names the
//! service that sent it when that is recognisable. It is pure, allocation-light
//! and linear in the length of the text: candidates are found by a single scan
//! over the characters, cue words are located once, and every candidate then
//! only looks at a bounded window around itself.
//!
//! Precision is preferred over recall: a bare number without any cue word is
//! normally not reported, and numbers that look like dates, times, amounts,
//! phone numbers, years, references or durations are rejected.

use std::sync::LazyLock;

/// A one-time code found in a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneTimeCode {
    /// The normalised code: separators removed, ASCII digits and upper-case letters.
    pub code: String,
    /// The service the code is for, when recognisable.
    pub service: Option<String>,
}

/// Extracts the one-time code of an SMS `text` received from `sender`.
///
/// `sender` is a phone number, a short code or an alphanumeric sender id.
pub fn extract(text: &str, sender: &str) -> Option<OneTimeCode> {
    let t = Text::new(text);
    let code = find_code(&t)?;
    Some(OneTimeCode {
        code,
        service: find_service(&t, sender, true),
    })
}

/// Names the service a message comes from, when recognisable, whether or not
/// it carries a code. [`extract`] uses the same rules for its `service`.
///
/// Without a code only the sender and a leading label ("[Service]",
/// "Service: ") count; a service merely mentioned in a chat message does not.
pub fn service(text: &str, sender: &str) -> Option<String> {
    let t = Text::new(text);
    let has_code = find_code(&t).is_some();
    find_service(&t, sender, has_code)
}

// ---------------------------------------------------------------------------
// Text preparation
// ---------------------------------------------------------------------------

/// The message as normalised characters plus a lower-cased copy of the same
/// length, so that indices line up.
struct Text {
    c: Vec<char>,
    l: Vec<char>,
}

impl Text {
    fn new(s: &str) -> Self {
        let c: Vec<char> = s.chars().map(normalise).collect();
        let l = c.iter().map(|&ch| lower(ch)).collect();
        Text { c, l }
    }

    fn len(&self) -> usize {
        self.c.len()
    }

    /// The character at `i`, or NUL outside the text.
    fn at(&self, i: usize) -> char {
        self.c.get(i).copied().unwrap_or('\0')
    }

    /// The character before `i`, or NUL at the start.
    fn before(&self, i: usize) -> char {
        if i == 0 { '\0' } else { self.at(i - 1) }
    }

    /// The lower-cased word (letters, plus `$` and `₹`-like symbols) just before
    /// `i`, skipping at most two spaces and a dot.
    fn prev_word(&self, i: usize) -> String {
        let mut j = i;
        let mut spaces = 0;
        while j > 0 && self.at(j - 1) == ' ' && spaces < 2 {
            j -= 1;
            spaces += 1;
        }
        if j > 0 && self.at(j - 1) == '.' {
            j -= 1;
        }
        let end = j;
        while j > 0 && (self.at(j - 1).is_alphabetic() || self.at(j - 1) == '$') {
            j -= 1;
        }
        self.l[j..end].iter().collect()
    }

    /// The lower-cased word just after `i`, skipping at most two spaces.
    fn next_word(&self, i: usize) -> String {
        let mut j = i;
        let mut spaces = 0;
        while j < self.len() && self.at(j) == ' ' && spaces < 2 {
            j += 1;
            spaces += 1;
        }
        let start = j;
        while j < self.len() && self.at(j).is_alphabetic() {
            j += 1;
        }
        self.l[start..j].iter().collect()
    }

    /// The first non-space character before `i` (skipping at most one space).
    fn prev_sym(&self, i: usize) -> char {
        if self.before(i) == ' ' {
            self.before(i - 1)
        } else {
            self.before(i)
        }
    }

    /// The first non-space character at or after `i` (skipping at most one space).
    fn next_sym(&self, i: usize) -> char {
        if self.at(i) == ' ' {
            self.at(i + 1)
        } else {
            self.at(i)
        }
    }
}

fn lower(ch: char) -> char {
    // Most text is ASCII; the full Unicode table lookup is only for the rest.
    if ch.is_ascii() {
        ch.to_ascii_lowercase()
    } else {
        ch.to_lowercase().next().unwrap_or(ch)
    }
}

/// Maps other digit scripts and full-width forms to ASCII and odd spaces to a
/// plain space. One character in, one character out.
fn normalise(ch: char) -> char {
    if ch.is_ascii() {
        return ch;
    }
    let u = ch as u32;
    let mapped = match u {
        // Full-width digits and Latin letters.
        0xFF10..=0xFF19 | 0xFF21..=0xFF3A | 0xFF41..=0xFF5A => u - 0xFEE0,
        // Arabic-Indic, Persian, Devanagari and Bengali digits.
        0x0660..=0x0669 => u - 0x0660 + 0x30,
        0x06F0..=0x06F9 => u - 0x06F0 + 0x30,
        0x0966..=0x096F => u - 0x0966 + 0x30,
        0x09E6..=0x09EF => u - 0x09E6 + 0x30,
        // No-break, thin, figure and ideographic spaces.
        0x00A0 | 0x2007 | 0x2009 | 0x202F | 0x3000 => 0x20,
        // Unicode hyphens.
        0x2010 | 0x2011 => 0x2D,
        _ => u,
    };
    char::from_u32(mapped).unwrap_or(ch)
}

fn is_cjk(ch: char) -> bool {
    matches!(ch as u32,
        0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xAC00..=0xD7AF
        | 0x1100..=0x11FF | 0x3130..=0x318F | 0xF900..=0xFAFF | 0x3000..=0x303F
        | 0xFF00..=0xFFEF)
}

/// A letter that may not touch a code directly (Latin or Cyrillic): `45pm`,
/// `5min`, `10руб`.
fn is_glue_letter(ch: char) -> bool {
    ch.is_ascii_alphabetic()
        || ('\u{00C0}'..='\u{024F}').contains(&ch)
        || ('\u{0400}'..='\u{04FF}').contains(&ch)
}

fn is_terminator(t: &Text, i: usize) -> bool {
    match t.at(i) {
        '!' | '?' | '\n' | '。' | '！' | '？' | '|' => true,
        '.' => {
            // A full stop ends a sentence when it follows a longer word; short
            // words before a dot are abbreviations ("Ref.", "acct.", "No.").
            let next = t.at(i + 1);
            if !(next == ' ' || next == '\n' || next == '\0') {
                return false;
            }
            let mut j = i;
            while j > 0 && i - j < 5 && t.at(j - 1).is_alphabetic() {
                j -= 1;
            }
            i - j >= 5 || (i > 0 && t.at(i - 1).is_ascii_digit())
        }
        _ => false,
    }
}

// ---------------------------------------------------------------------------
// Cue words
// ---------------------------------------------------------------------------

/// Words that announce a one-time code, lower-case. A leading `=` means the
/// cue must stand as a whole word.
#[rustfmt::skip]
const POSITIVE: &[&str] = &[
    "=mtan", "=smstan", "=sms-tan", "=pushtan", "=chiptan",
    // English
    "code", "=otp", "=pin", "passcode", "password", "verif", "one-time", "one time", "authenticat",
    "=2fa", "=tac", "=token", "=enter", "=use",
    // Imperatives that introduce a code: enter / use / type
    "=ingresa", "=introduce", "=digite", "=insira", "=eingeben", "=entrez", "=saisissez",
    "=inserisci", "=введите", "=masukkan", "=nhập", "=wpisz", "=voer", "=girin", "=xác nhận",
    // Spanish, Portuguese
    "código", "codigo", "=clave", "contraseña", "senha",
    // German, Dutch
    "bestätigung", "=tan", "einmal", "wachtwoord",
    // French, Italian
    "vérification", "codice", "mot de passe",
    // Russian, Polish, Turkish, Indonesian
    "код", "подтвержд", "пароль", "kod", "hasło", "weryfikac", "doğrulama", "dogrulama", "şifre",
    "=sifre", "kata sandi",
    // Vietnamese
    "=mã", "=ma otp", "xác minh", "xác thực", "xac minh", "xac thuc",
    // Chinese
    "验证码", "校验码", "驗證碼", "验证", "驗證", "动态码", "動態碼", "确认码", "安全码", "认证码", "動態密碼", "动态密码",
    // Japanese
    "認証", "確認コード", "確認番号", "コード", "ワンタイム", "暗証",
    // Korean
    "인증", "코드", "확인번호", "보안번호",
    // Arabic
    "رمز", "كود", "تحقق", "التحقق", "كلمة المرور", "لمرة واحدة",
    // One-time passwords in other languages
    "mật khẩu", "jednorazow", "eenmalig", "tek kullanımlık", "sekali pakai", "पासवर्ड", "одноразов",
    "一次性", "일회용",
    // Hindi
    "कोड", "ओटीपी", "सत्यापन",
];

/// Words that make the number right after them something else than a code:
/// orders, tracking, invoices, references, accounts, cards, phone calls,
/// balances, seats. Looked for only before a candidate, within a short window.
#[rustfmt::skip]
const NEGATIVE: &[&str] = &[
    // Addresses
    "=street", "=st", "=avenue", "=ave", "=road", "=rd", "=calle", "=avenida", "=av", "=rua",
    "straße", "strasse", "hausnummer", "=rue", "=via", "=viale", "=piazza", "улица", "=ул",
    "=ulica", "=ul", "=straat", "=jalan", "=jl", "=đường", "=cadde", "=caddesi", "=sokak",
    "=sk", "=mahallesi", "=apartment", "=floor", "=piso", "=andar", "=stock", "=étage",
    // English
    "order", "tracking", "=track", "invoice", "=ref", "reference", "booking", "account", "=acct",
    "a/c", "card", "=ending", "ends in", "policy", "ticket", "flight", "=room", "=gate", "=seat",
    "shipment", "parcel", "package", "=awb", "=pnr", "=zip", "postal", "=ext", "extension", "=call",
    "phone", "=tel", "=fax", "promo", "coupon", "discount", "voucher", "balance", "=bal", "=txn",
    "transaction", "user id", "meeting id", "=uid", "member", "customer", "=claim", "=case",
    "=unit", "=apt", "=suite", "=plate", "=route", "=bus", "=train", "platform", "=rx",
    "prescription", "amount", "=total", "=price", "=paid", "=due", "=bill", "=loan", "=no", "=nr",
    "=xx", "=ending in", "=store", "=dial", "=text", "=reply", "=sms", "=table", "=line", "=ward",
    "=bed", "=lot", "=box", "=locker", "=version", "=v", "=ver", "=model", "=serial",
    // Spanish, Portuguese
    "pedido", "seguimiento", "rastreo", "envío", "cuenta", "tarjeta", "terminada", "factura",
    "reserva", "referencia", "saldo", "importe", "llame", "llama", "teléfono", "cupón", "descuento",
    "vuelo", "asiento", "encomenda", "rastreio", "=conta", "cartão", "=final", "fatura", "boleto",
    "=valor", "ligue", "telefone", "cupom", "desconto", "=voo", "protocolo", "=nº", "=n°", "=núm",
    "=número", "=numero", "=localizador",
    // German
    "bestellung", "sendung", "konto", "karte", "rechnung", "buchung", "kundennummer", "betrag",
    "=rufen", "telefon", "gutschein", "rabatt", "=flug", "vertrag", "=endet", "=endend", "auftrag",
    "paket", "lieferung", "vorgang", "=tel.", "aktenzeichen",
    // French, Italian
    "commande", "colis", "suivi", "compte", "carte", "facture", "réservation", "montant", "=solde",
    "appelez", "téléphone", "réduction", "=vol", "dossier", "référence", "client", "ordine",
    "spedizione", "=conto", "carta", "fattura", "prenotazione", "importo", "chiama", "telefono",
    "sconto", "=volo", "pratica", "pacco",
    // Dutch
    "bestelling", "zending", "pakket", "rekening", "kaart", "factuur", "=bel", "korting", "vlucht",
    "boeking",
    // Russian
    "заказ", "трек", "посылк", "отправлени", "счет", "счёт", "карт", "баланс", "сумма", "звоните",
    "телефон", "промокод", "скидк", "рейс", "договор", "=номер",
    // Polish, Turkish, Indonesian, Vietnamese
    "zamówieni", "przesyłk", "paczk", "kart", "faktur", "zadzwoń", "=rabat", "=lot", "sipariş",
    "siparis", "kargo", "takip", "hesap", "bakiye", "tutar", "arayın", "indirim", "rezervasyon",
    "uçuş", "=ucus", "pesanan", "=resi", "rekening", "kartu", "tagihan", "hubungi", "telepon",
    "diskon", "pemesanan", "penerbangan", "đơn hàng", "vận đơn", "tài khoản", "=tk", "=thẻ",
    "số dư", "=gọi", "giảm", "hóa đơn", "chuyến bay", "=stk",
    // Chinese, Japanese, Korean
    "订单", "訂單", "运单", "運單", "快递", "單號", "单号", "尾号", "尾號", "卡号", "账户", "帳戶", "账号", "余额", "餘額", "金额",
    "金額", "电话", "電話", "客服", "优惠", "取件", "取餐", "航班", "注文", "伝票", "追跡", "口座", "カード", "残高", "クーポン",
    "予約", "お問い合わせ", "便名", "주문", "운송장", "송장", "계좌", "카드", "잔액", "금액", "전화", "쿠폰", "예약", "배송", "승인번호",
    // Arabic, Hindi
    "طلب", "شحن", "تتبع", "حساب", "بطاقة", "رصيد", "مبلغ", "اتصل", "هاتف", "خصم", "حجز", "فاتورة",
    "الطلب", "ऑर्डर", "खाता", "कार्ड", "शेष", "राशि", "कॉल", "बुकिंग", "ट्रैकिंग", "टिकट",
];

/// Phrases naming a code that is not a one-time code (promo, postal, pickup,
/// booking codes). They win over a positive cue on either side.
#[rustfmt::skip]
const NEGATIVE_PHRASES: &[&str] = &[
    // Discount compounds and words that mark a marketing code.
    "gutscheincode", "rabattcode", "aktionscode", "promocode", "couponcode", "actiecode",
    "descuento", "rabatt", "réduction", "sconto", "скидк", "indirim", "diskon", "giảm giá",
    "giảm", "korting", "rabat", "desconto", "discount", "立减", "折扣", "割引", "할인", "خصم",
    "छूट",
    "promo", "promo code", "promotional code", "at checkout", "% off", "coupon", "coupon code",
    "voucher code", "discount code", "gift card code", "offer code", "voucher", "zip code",
    "postal code", "postcode", "area code", "booking code", "reference code", "door code",
    "qr code", "qr-code", "gift code", "referral code", "invite code", "invitation code",
    "sort code", "swift code", "bic code", "tracking code", "confirmation code for your booking",
    "código postal", "código de descuento", "código de reserva", "código de rastreio",
    "código de seguimiento", "código de rastreo", "código de barras", "cupom", "cupón", "gutschein",
    "rabattcode", "postleitzahl", "code postal", "code de réduction", "codice sconto",
    "codice postale", "codice di prenotazione", "промокод", "почтовый индекс", "取件码", "取件碼", "取餐码",
    "优惠码", "優惠碼", "邮编", "クーポン", "郵便番号", "쿠폰", "우편번호", "kod rabatowy", "kod pocztowy",
    "kortingscode", "kode promo", "kode voucher", "kode pos", "kode booking", "mã giảm giá",
    "mã khuyến mãi", "mã đơn", "mã vận đơn", "promosyon kodu", "indirim kodu", "posta kodu",
    "kargo takip", "رمز الخصم", "كود الخصم", "الرمز البريدي", "प्रोमो कोड", "पिन कोड", "पिनकोड",
];

/// A word to look for, decoded once: its characters, whether it must stand
/// as a whole word (the leading `=` in the cue tables), and what it stands
/// for (nothing for cue words, the canonical name for service names).
struct Pattern<T> {
    chars: Box<[char]>,
    word: bool,
    value: T,
}

impl<T> Pattern<T> {
    /// Does `text` hold this pattern at `i`? Compared in place, since a call
    /// to `memcmp` per attempt cost more than the comparison itself: most
    /// attempts fail on the second character.
    fn at(&self, text: &[char], i: usize) -> bool {
        text.len() >= i + self.chars.len() && self.chars.iter().zip(&text[i..]).all(|(p, c)| p == c)
    }
}

/// Patterns indexed by first character.
///
/// Matching every cue at every position of the text (several hundred string
/// comparisons per character) was nearly all of the extraction time. Here the
/// patterns are sorted by first character, so a position only tries the few
/// that can start there: ASCII characters find their bucket directly, other
/// characters by a binary search over the first characters kept inline
/// (searching through the boxed patterns themselves missed the cache at every
/// step). The sort is stable, so a bucket keeps the order of the source table
/// and "first match wins" rules are unchanged.
struct PatternIndex<T> {
    patterns: Vec<Pattern<T>>,
    /// `patterns[k].chars[0]`, sorted.
    firsts: Vec<char>,
    /// For ASCII `c`, the bucket is `ascii[c]..ascii[c + 1]`; non-ASCII first
    /// characters all sort after `ascii[128]`.
    ascii: [usize; 129],
    /// One bit per `c % 1024` of the non-ASCII first characters: most CJK,
    /// Arabic or Cyrillic characters start no pattern, and this rejects them
    /// without a binary search.
    non_ascii: [u64; 16],
}

impl<T> PatternIndex<T> {
    fn new(items: impl IntoIterator<Item = (String, bool, T)>) -> Self {
        let mut patterns: Vec<(char, Pattern<T>)> = items
            .into_iter()
            // An empty pattern can never match, so it needs no bucket.
            .filter_map(|(text, word, value)| {
                let first = text.chars().next()?;
                let chars = text.chars().collect();
                Some((first, Pattern { chars, word, value }))
            })
            .collect();
        patterns.sort_by_key(|(first, _)| *first);
        let firsts: Vec<char> = patterns.iter().map(|(first, _)| *first).collect();
        let mut ascii = [0; 129];
        for (c, slot) in (0u8..=128).zip(ascii.iter_mut()) {
            *slot = firsts.partition_point(|&f| (f as u32) < u32::from(c));
        }
        let mut non_ascii = [0u64; 16];
        for &f in firsts.iter().filter(|f| !f.is_ascii()) {
            let bit = f as usize % 1024;
            non_ascii[bit / 64] |= 1 << (bit % 64);
        }
        PatternIndex {
            patterns: patterns.into_iter().map(|(_, p)| p).collect(),
            firsts,
            ascii,
            non_ascii,
        }
    }

    /// The patterns whose first character is `first`, in table order.
    fn starting_with(&self, first: char) -> &[Pattern<T>] {
        let (lo, hi) = if first.is_ascii() {
            let c = first as usize;
            (self.ascii[c], self.ascii[c + 1])
        } else {
            let bit = first as usize % 1024;
            if self.non_ascii[bit / 64] & (1 << (bit % 64)) == 0 {
                return &[];
            }
            let rest = &self.firsts[self.ascii[128]..];
            let lo = rest.partition_point(|&f| f < first);
            let hi = lo + rest[lo..].partition_point(|&f| f == first);
            (self.ascii[128] + lo, self.ascii[128] + hi)
        };
        &self.patterns[lo..hi]
    }
}

type CueTable = PatternIndex<()>;

/// Decodes a cue table: a leading `=` asks for a whole word.
fn cue_table(words: &[&str]) -> CueTable {
    PatternIndex::new(words.iter().map(|w| match w.strip_prefix('=') {
        Some(p) => (p.to_string(), true, ()),
        None => (w.to_string(), false, ()),
    }))
}

static POSITIVE_CUES: LazyLock<CueTable> = LazyLock::new(|| cue_table(POSITIVE));
static NEGATIVE_CUES: LazyLock<CueTable> = LazyLock::new(|| cue_table(NEGATIVE));
static NEGATIVE_PHRASE_CUES: LazyLock<CueTable> = LazyLock::new(|| cue_table(NEGATIVE_PHRASES));

/// Marks where cue words start and end.
struct Marks {
    starts: Vec<bool>,
    ends: Vec<bool>,
}

impl Marks {
    fn new(t: &Text, cues: &CueTable) -> Self {
        let n = t.len();
        let mut starts = vec![false; n + 1];
        let mut ends = vec![false; n + 1];
        for (i, &first) in t.l.iter().enumerate() {
            for cue in cues.starting_with(first) {
                if !cue.at(&t.l, i) {
                    continue;
                }
                let end = i + cue.chars.len();
                if cue.word && (t.before(i).is_alphanumeric() || t.at(end).is_alphanumeric()) {
                    continue;
                }
                starts[i] = true;
                ends[end] = true;
            }
        }
        Marks { starts, ends }
    }

    /// Does the text hold any cue at all?
    fn any(&self) -> bool {
        self.starts.contains(&true)
    }
}

/// Nearest positive cue on each side of every position.
struct Nearest {
    prev_end: Vec<Option<usize>>,
    next_start: Vec<Option<usize>>,
}

impl Nearest {
    fn new(m: &Marks) -> Self {
        let n = m.ends.len();
        let mut prev_end = vec![None; n];
        let mut last = None;
        for (i, slot) in prev_end.iter_mut().enumerate() {
            if m.ends[i] {
                last = Some(i);
            }
            *slot = last;
        }
        let mut next_start = vec![None; n];
        let mut next = None;
        for i in (0..n).rev() {
            if m.starts[i] {
                next = Some(i);
            }
            next_start[i] = next;
        }
        Nearest {
            prev_end,
            next_start,
        }
    }

    /// Characters between the candidate `[s, e)` and the nearest cue.
    fn distance(&self, s: usize, e: usize) -> Option<usize> {
        let before = self.prev_end.get(s).copied().flatten().map(|p| s - p);
        let after = self.next_start.get(e).copied().flatten().map(|p| p - e);
        match (before, after) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

// ---------------------------------------------------------------------------
// Candidates
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Digits,
    Alnum,
}

#[derive(Debug, Clone)]
struct Candidate {
    code: String,
    start: usize,
    end: usize,
    kind: Kind,
    year: bool,
    dotted: bool,
    google: bool,
}

const NUMBER_SEPARATORS: &[char] = &[' ', '-', '.', ',', ':', '/', '\''];

/// Finds all code-shaped tokens in one pass.
fn candidates(t: &Text) -> Vec<Candidate> {
    let n = t.len();
    let mut out = Vec::new();
    let mut i = 0;
    while i < n {
        if !t.at(i).is_ascii_alphanumeric() {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < n && t.at(j).is_ascii_alphanumeric() {
            j += 1;
        }
        let next = if t.c[i..j].iter().all(char::is_ascii_digit) {
            number(t, i, &mut out)
        } else {
            alnum(t, i, j, &mut out)
        };
        i = next.max(j);
    }
    out
}

fn digits_of(t: &Text, groups: &[(usize, usize)]) -> String {
    groups.iter().flat_map(|&(a, b)| t.c[a..b].iter()).collect()
}

fn value(t: &Text, (a, b): (usize, usize)) -> u32 {
    t.c[a..b].iter().fold(0u32, |acc, ch| {
        acc.saturating_mul(10)
            .saturating_add(ch.to_digit(10).unwrap_or(0))
    })
}

/// Two or three small groups that read as a day and a month (and a year).
fn date_like(t: &Text, groups: &[(usize, usize)]) -> bool {
    let lens: Vec<usize> = groups.iter().map(|(a, b)| b - a).collect();
    let vals: Vec<u32> = groups.iter().map(|&g| value(t, g)).collect();
    let dm =
        |x: u32, y: u32| (1..=31).contains(&x) && (1..=31).contains(&y) && (x <= 12 || y <= 12);
    match lens.as_slice() {
        [4, 2, 2] => (1..=12).contains(&vals[1]) && (1..=31).contains(&vals[2]),
        [1 | 2, 1 | 2, 4] | [1 | 2, 1 | 2, 2] => dm(vals[0], vals[1]),
        [2, 2] => dm(vals[0], vals[1]),
        _ => false,
    }
}

/// Parses a number expression starting at `start` (digits joined by single
/// separators), pushes the code candidates it holds and returns its end.
fn number(t: &Text, start: usize, out: &mut Vec<Candidate>) -> usize {
    let n = t.len();
    let mut groups = Vec::new();
    let mut seps = Vec::new();
    let mut p = start;
    loop {
        let gs = p;
        while p < n && t.at(p).is_ascii_digit() {
            p += 1;
        }
        groups.push((gs, p));
        let sep = t.at(p);
        if p + 1 < n && NUMBER_SEPARATORS.contains(&sep) && t.at(p + 1).is_ascii_digit() {
            seps.push(sep);
            p += 1;
        } else {
            break;
        }
    }
    let end = p;
    // Phone numbers: "+1 415 ...", "+447700900123".
    if t.prev_sym(start) == '+' {
        return end;
    }
    let google = start >= 2
        && t.at(start - 1) == '-'
        && t.at(start - 2) == 'G'
        && !t.before(start - 2).is_alphanumeric();
    let total: usize = groups.iter().map(|(a, b)| b - a).sum();
    let len = |g: &(usize, usize)| g.1 - g.0;
    let mk = |groups: &[(usize, usize)], dotted: bool| {
        let (s, e) = (groups[0].0, groups[groups.len() - 1].1);
        let code = digits_of(t, groups);
        let year =
            groups.len() == 1 && code.len() == 4 && (1900..=2099).contains(&value(t, groups[0]));
        Candidate {
            code,
            start: s,
            end: e,
            kind: Kind::Digits,
            year,
            dotted,
            google: google && s == start,
        }
    };
    let Some(&sep) = seps.first() else {
        if (4..=8).contains(&total) {
            out.push(mk(&groups, false));
        }
        return end;
    };
    if seps.iter().any(|&s| s != sep) || matches!(sep, ':' | '/' | ',' | '\'') {
        // Times, dates, amounts, mixed notations.
        return end;
    }
    let grouped = groups.iter().all(|g| (2..=4).contains(&len(g)));
    match sep {
        ' ' => {
            if grouped && (4..=8).contains(&total) {
                out.push(mk(&groups, false));
            } else if total <= 8 {
                for g in &groups {
                    if (4..=8).contains(&len(g)) {
                        out.push(mk(std::slice::from_ref(g), false));
                    }
                }
            }
        }
        '-' => {
            if grouped && (4..=8).contains(&total) && !date_like(t, &groups) {
                out.push(mk(&groups, false));
            }
        }
        _ => {
            // '.': only "123.456"-style codes; everything else is a date,
            // a decimal or a thousands-separated amount.
            if groups.len() == 2 && groups.iter().all(|g| len(g) == 3) {
                out.push(mk(&groups, true));
            }
        }
    }
    end
}

/// Handles an ASCII word `[i, j)` containing letters: an upper-case code such
/// as `A1B2C3` or `X7K-9PQ`. Returns where scanning continues.
fn alnum(t: &Text, i: usize, j: usize, out: &mut Vec<Candidate>) -> usize {
    let upper = |a: usize, b: usize| {
        t.c[a..b]
            .iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    };
    if !upper(i, j) || t.before(i) == '-' && t.before(i - 1).is_ascii_alphanumeric() {
        return j;
    }
    let mut end = j;
    // Google's "G-123456" is a digit code with a prefix.
    if !(j - i == 1 && t.at(i) == 'G') && t.at(j) == '-' && t.at(j + 1).is_ascii_alphanumeric() {
        let mut k = j + 1;
        while k < t.len() && t.at(k).is_ascii_alphanumeric() {
            k += 1;
        }
        if upper(j + 1, k) && k - i - 1 <= 10 {
            end = k;
        }
    }
    let code: String = t.c[i..end].iter().filter(|c| **c != '-').collect();
    let letters = code.chars().filter(char::is_ascii_uppercase).count();
    let digits = code.len() - letters;
    if letters == 0 || digits == 0 || !(4..=10).contains(&code.len()) {
        return end;
    }
    // "10AM", "100GB", "2ND": a number with a short unit suffix.
    let first_letter = code.find(|c: char| c.is_ascii_uppercase()).unwrap_or(0);
    let digits_then_letters = code[..first_letter].chars().all(|c| c.is_ascii_digit())
        && code[first_letter..].chars().all(|c| c.is_ascii_uppercase());
    if digits_then_letters && letters <= 3 {
        return end;
    }
    // "USD20", "INR500": a currency code with an amount.
    let letters_then_digits = code[..letters].chars().all(|c| c.is_ascii_uppercase());
    if letters_then_digits && is_currency_word(&code[..letters].to_lowercase()) {
        return end;
    }
    out.push(Candidate {
        code,
        start: i,
        end,
        kind: Kind::Alnum,
        year: false,
        dotted: false,
        google: false,
    });
    end
}

// ---------------------------------------------------------------------------
// Context checks
// ---------------------------------------------------------------------------

#[rustfmt::skip]
const CURRENCY_SYMBOLS: &[char] = &[
    '$', '€', '£', '¥', '₹', '₽', '₩', '₺', '₫', '₱', '฿', '₴', '₸', '₦', '¢', '﷼', '元', '円', '원',
    '块', '圆', 'đ', '₪', '₼', '₾',
];

#[rustfmt::skip]
const CURRENCY_WORDS: &[&str] = &[
    "usd", "eur", "gbp", "inr", "rs", "rub", "idr", "rp", "try", "tl", "vnd", "vnđ", "jpy", "cny",
    "rmb", "krw", "brl", "mxn", "pln", "sar", "aed", "egp", "chf", "cad", "aud", "sgd", "myr",
    "php", "thb", "uah", "kzt", "zł", "zl", "đ", "dh", "р", "грн", "тг", "r$", "us$", "ks", "lei",
    "kr", "ft", "kč", "sek", "nok", "dkk", "huf", "czk", "ron", "ngn", "kes", "zar", "ils", "qar",
    "kwd", "bhd", "omr", "jod", "won", "yen", "baht", "dong", "lira", "euro", "euros", "dollar",
    "dollars", "pesos", "peso", "reais", "real", "yuan", "rupees", "rupee", "sol", "soles",
    "dirham", "dirhams", "riyal", "riyals", "руб", "рублей", "рубля", "рубль", "ريال", "درهم",
    "جنيه", "دينار", "دولار", "ر.س", "रुपये", "रुपए", "रु", "złotych", "zloty", "ringgit", "lirası",
    "liras", "dólares", "dólar", "usdt", "btc", "eth",
];

fn is_currency_word(w: &str) -> bool {
    CURRENCY_WORDS.contains(&w)
}

#[rustfmt::skip]
const MONTHS: &[&str] = &[
    "january", "february", "march", "april", "may", "june", "july", "august", "september",
    "october", "november", "december", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep",
    "sept", "oct", "nov", "dec", "enero", "febrero", "marzo", "abril", "mayo", "junio", "julio",
    "agosto", "septiembre", "setiembre", "octubre", "noviembre", "diciembre", "ene", "abr", "ago",
    "dic", "janeiro", "fevereiro", "março", "maio", "junho", "julho", "setembro", "outubro",
    "novembro", "dezembro", "fev", "dez", "januar", "jänner", "februar", "märz", "juni", "juli",
    "oktober", "dezember", "okt", "janvier", "février", "mars", "avril", "juin", "juillet", "août",
    "septembre", "octobre", "novembre", "décembre", "janv", "févr", "avr", "juil", "déc", "gennaio",
    "febbraio", "aprile", "maggio", "giugno", "luglio", "settembre", "ottobre", "dicembre",
    "januari", "februari", "maart", "mei", "augustus", "stycznia", "lutego", "marca", "kwietnia",
    "maja", "czerwca", "lipca", "sierpnia", "września", "października", "listopada", "grudnia",
    "ocak", "şubat", "mart", "nisan", "mayıs", "haziran", "temmuz", "ağustos", "eylül", "ekim",
    "kasım", "aralık", "maret", "agustus", "desember", "января", "февраля", "марта", "апреля",
    "мая", "июня", "июля", "августа", "сентября", "октября", "ноября", "декабря", "tháng", "يناير",
    "فبراير", "مارس", "أبريل", "مايو", "يونيو", "يوليو", "أغسطس", "سبتمبر", "أكتوبر", "نوفمبر",
    "ديسمبر", "जनवरी", "फरवरी", "मार्च", "अप्रैल", "मई", "जून", "जुलाई", "अगस्त", "सितंबर",
    "अक्टूबर", "नवंबर", "दिसंबर",
];

/// Words before a year that make it a year even near a cue word.
#[rustfmt::skip]
const YEAR_WORDS: &[&str] = &[
    "since", "in", "year", "from", "until", "copyright", "desde", "seit", "depuis", "dal", "с",
    "год", "sejak", "tahun", "từ", "năm", "od", "sinds", "jaar", "año", "ano", "jahr", "année",
    "anno", "yılı", "roku", "سنة", "عام", "वर्ष", "©",
];

/// Units after a number that make it a quantity.
#[rustfmt::skip]
const UNITS: &[&str] = &[
    "min", "mins", "minute", "minutes", "hour", "hours", "hr", "hrs", "h", "sec", "secs", "second",
    "seconds", "day", "days", "minutos", "minuto", "horas", "minuten", "stunden", "minuti", "ore",
    "минут", "минуты", "мин", "часов", "часа", "дней", "dakika", "saat", "menit", "jam", "phút",
    "giờ", "minut", "minuty", "godzin", "uur", "uhr", "dk", "gb", "mb", "tb", "kb", "kg", "g", "km",
    "m", "mg", "ml", "l", "pcs", "items", "points", "pts", "miles", "puan", "poin", "pontos",
    "puntos", "punkte", "баллов", "bonus", "calls", "dakikadır", "दिन", "मिनट", "घंटे", "دقائق",
    "دقيقة", "ساعة", "ngày",
];

/// Characters that, directly after a number, make it a date, a time, a count
/// or an amount in CJK text.
#[rustfmt::skip]
const CJK_SUFFIXES: &[char] = &[
    '年', '月', '日', '년', '월', '일', '時', '时', '시', '분', '分', '秒', '초', '点', '點', '号', '號', '元', '円',
    '원', '块', '個', '个', '件', '人', '명', '개', '건', '歳', '岁', '회', '回', '次', '번', '%', '％',
];

/// Looks around a candidate for signs that it is not a code.
fn context_ok(t: &Text, cand: &Candidate) -> bool {
    let (s, e) = (cand.start, cand.end);
    let before = t.before(s);
    let after = t.at(e);
    if is_glue_letter(after)
        || (cand.kind == Kind::Digits && !cand.google && is_glue_letter(before))
    {
        return false;
    }
    // "(415) 555-0100"
    let ps = t.prev_sym(s);
    if ps == ')' {
        let k = if before == ' ' { s - 2 } else { s - 1 };
        if t.before(k).is_ascii_digit() {
            return false;
        }
    }
    if ps == '+' {
        return false;
    }
    // Amounts and percentages.
    let ns = t.next_sym(e);
    if CURRENCY_SYMBOLS.contains(&ps) || CURRENCY_SYMBOLS.contains(&ns) || ns == '%' || ns == '％'
    {
        return false;
    }
    let pw = t.prev_word(s);
    let nw = t.next_word(e);
    if is_currency_word(&pw) || is_currency_word(&nw) {
        return false;
    }
    // Dates, durations and quantities.
    if MONTHS.contains(&pw.as_str())
        || MONTHS.contains(&nw.as_str())
        || UNITS.contains(&nw.as_str())
    {
        return false;
    }
    if cand.year && YEAR_WORDS.contains(&pw.as_str()) {
        return false;
    }
    if CJK_SUFFIXES.contains(&after) || (after == ' ' && CJK_SUFFIXES.contains(&t.at(e + 1))) {
        return false;
    }
    // Part of a path or query: "t.me/login/123456", "?code=123456".
    if after == '/' || after == '@' {
        return false;
    }
    let mut k = s;
    let mut steps = 0;
    while k > 0 && steps < 120 {
        let ch = t.at(k - 1);
        if ch.is_whitespace() || (!ch.is_ascii() && !ch.is_alphanumeric()) || is_cjk(ch) {
            break;
        }
        if matches!(ch, '/' | '=' | '?' | '&' | '@') {
            return false;
        }
        k -= 1;
        steps += 1;
    }
    true
}

/// Is the candidate named as something else than a code by a nearby word?
fn blocked(t: &Text, cand: &Candidate, pos: &Marks, neg: &Marks, phrases: &Marks) -> bool {
    const WINDOW: usize = 32;
    // Backwards: the nearest of a negative word, a positive cue, another
    // number or a sentence end decides. Negative words only count within
    // the three words before the candidate ("card ending in 4821").
    let mut j = cand.start;
    let stop = cand.start.saturating_sub(WINDOW);
    let mut gaps = 0;
    while j > stop {
        if phrases.ends[j] || (neg.ends[j] && gaps <= 3) {
            return true;
        }
        if pos.ends[j] {
            break;
        }
        let ch = t.at(j - 1);
        if ch.is_ascii_digit() || is_terminator(t, j - 1) {
            break;
        }
        if ch.is_whitespace() && !t.before(j - 1).is_whitespace() {
            gaps += 1;
        }
        j -= 1;
    }
    // Forwards: only negative phrases ("... is your promo code").
    let mut j = cand.end;
    let stop = (cand.end + WINDOW).min(t.len());
    while j < stop {
        if phrases.starts[j] {
            return true;
        }
        if pos.starts[j] || is_terminator(t, j) {
            break;
        }
        j += 1;
    }
    false
}

fn letter_words(t: &Text) -> usize {
    let mut words = 0;
    let mut in_word = false;
    for &ch in &t.c {
        let letter = ch.is_alphabetic();
        if letter && !in_word {
            words += 1;
        }
        in_word = letter;
    }
    words
}

fn find_code(t: &Text) -> Option<String> {
    let cands = candidates(t);
    if cands.is_empty() {
        return None;
    }
    let pos = Marks::new(t, &POSITIVE_CUES);
    let neg = Marks::new(t, &NEGATIVE_CUES);
    let phrases = Marks::new(t, &NEGATIVE_PHRASE_CUES);
    let near = Nearest::new(&pos);
    let mut best: Option<(usize, &Candidate)> = None;
    let mut bare = Vec::new();
    for cand in &cands {
        if !context_ok(t, cand) || blocked(t, cand, &pos, &neg, &phrases) {
            continue;
        }
        let score = if cand.google {
            10_000
        } else {
            let limit = match cand.kind {
                Kind::Alnum => 25,
                Kind::Digits if cand.year => 12,
                Kind::Digits if cand.dotted => 20,
                Kind::Digits => 60,
            };
            match near.distance(cand.start, cand.end) {
                Some(d) if d <= limit => {
                    let penalty = if cand.kind == Kind::Alnum { 5 } else { 0 };
                    1_000 - d - penalty
                }
                _ => {
                    if cand.kind == Kind::Digits && !cand.year {
                        bare.push(cand);
                    }
                    continue;
                }
            }
        };
        if best.is_none_or(|(b, _)| score > b) {
            best = Some((score, cand));
        }
    }
    if let Some((_, cand)) = best {
        return Some(cand.code.clone());
    }
    // A very short message that is little more than a number ("123456",
    // "Acme 123456").
    match (bare.as_slice(), cands.len()) {
        ([only], 1) if letter_words(t) <= 2 => Some(only.code.clone()),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Service
// ---------------------------------------------------------------------------

/// Known services: canonical name and lower-case aliases.
const SERVICES: &[(&str, &[&str])] = &[
    ("Google", &["google", "gmail", "youtube"]),
    ("Microsoft", &["microsoft", "outlook", "hotmail", "xbox"]),
    ("Apple", &["apple", "icloud", "apple id"]),
    ("WhatsApp", &["whatsapp"]),
    ("Telegram", &["telegram"]),
    ("Facebook", &["facebook", "fb", "meta"]),
    ("Instagram", &["instagram"]),
    ("X", &["x", "twitter"]),
    ("Amazon", &["amazon", "amzn"]),
    ("PayPal", &["paypal"]),
    ("Uber", &["uber", "uber eats"]),
    ("Discord", &["discord"]),
    ("TikTok", &["tiktok", "抖音"]),
    ("Signal", &["signal"]),
    ("Steam", &["steam", "steam guard"]),
    ("Binance", &["binance"]),
    ("Coinbase", &["coinbase"]),
    ("Revolut", &["revolut"]),
    ("LinkedIn", &["linkedin"]),
    ("Snapchat", &["snapchat"]),
    ("Airbnb", &["airbnb"]),
    ("Netflix", &["netflix"]),
    ("Spotify", &["spotify"]),
    ("GitHub", &["github"]),
    ("Yahoo", &["yahoo"]),
    ("Tinder", &["tinder"]),
    ("Bumble", &["bumble"]),
    ("WeChat", &["wechat", "weixin", "微信"]),
    ("Alipay", &["alipay", "支付宝", "支付寶"]),
    ("Taobao", &["taobao", "淘宝", "淘寶"]),
    ("LINE", &["line"]),
    ("Kakao", &["kakao", "kakaotalk", "카카오", "카카오톡"]),
    ("Naver", &["naver", "네이버"]),
    ("Yandex", &["yandex", "яндекс"]),
    ("VK", &["vk", "vkontakte", "вконтакте"]),
    ("Grab", &["grab"]),
    ("Gojek", &["gojek"]),
    ("Shopee", &["shopee"]),
    ("Paytm", &["paytm"]),
    ("Twilio", &["twilio"]),
    ("Stripe", &["stripe"]),
    ("Viber", &["viber"]),
    ("Skype", &["skype"]),
    ("Slack", &["slack"]),
    ("Dropbox", &["dropbox"]),
    ("Tokopedia", &["tokopedia"]),
    ("Lazada", &["lazada"]),
    ("Rakuten", &["rakuten", "楽天"]),
    ("Mercari", &["mercari", "メルカリ"]),
    ("Tencent", &["tencent", "腾讯", "騰訊", "qq"]),
    (
        "Sberbank",
        &["sberbank", "сбербанк", "сбер", "сбербанк онлайн"],
    ),
    ("Tinkoff", &["tinkoff", "тинькофф", "т-банк"]),
    ("Avito", &["avito", "авито"]),
    ("Ozon", &["ozon", "озон"]),
    ("Trendyol", &["trendyol"]),
    ("Getir", &["getir"]),
    ("Flipkart", &["flipkart"]),
    ("PhonePe", &["phonepe"]),
    ("Zomato", &["zomato"]),
    ("Swiggy", &["swiggy"]),
    ("Careem", &["careem"]),
    ("Bolt", &["bolt"]),
    ("Lyft", &["lyft"]),
    ("Glovo", &["glovo"]),
    (
        "Mercado Libre",
        &["mercado libre", "mercadolibre", "mercado livre"],
    ),
    ("Nubank", &["nubank"]),
    ("iFood", &["ifood"]),
    ("Rappi", &["rappi"]),
    ("Allegro", &["allegro"]),
    ("OLX", &["olx"]),
    ("Zalando", &["zalando"]),
    ("Vinted", &["vinted"]),
    ("Bol.com", &["bol.com", "bol"]),
    ("N26", &["n26"]),
    ("Wise", &["wise", "transferwise"]),
    ("Zalo", &["zalo"]),
    ("MoMo", &["momo"]),
    ("Coupang", &["coupang", "쿠팡"]),
    ("Toss", &["toss", "토스"]),
    ("Baidu", &["baidu", "百度"]),
    ("JD", &["jd", "京东", "京東"]),
    ("Douyin", &["douyin"]),
    ("Bilibili", &["bilibili", "哔哩哔哩"]),
    ("Meituan", &["meituan", "美团"]),
    ("PayPay", &["paypay"]),
    ("Mail.ru", &["mail.ru"]),
    ("Wildberries", &["wildberries", "вайлдберриз"]),
    ("Hepsiburada", &["hepsiburada"]),
    ("Noon", &["noon"]),
    ("Talabat", &["talabat"]),
];

/// Sender ids and prefixes that name no service.
#[rustfmt::skip]
const GENERIC: &[&str] = &[
    "verify", "verification", "info", "sms", "otp", "notice", "alert", "alerts", "code", "codes",
    "auth", "authmsg", "secure", "security", "msg", "message", "notify", "notification", "service",
    "noreply", "no-reply", "promo", "reminder", "pin", "passcode", "2fa", "login", "account",
    "support", "admin", "system", "update", "text", "mobile", "bank", "confirm", "sms info",
    "infosms", "smsinfo", "verifyme", "warning", "attention", "important", "hi", "hello", "dear",
    "hey", "note", "urgent", "news", "sale", "weather alert", "reminder", "recordatorio", "aviso",
    "atención", "hinweis", "erinnerung", "rappel", "avviso", "promemoria", "напоминание",
    "внимание", "提醒", "通知", "お知らせ", "알림", "안내", "تنبيه", "web발신", "국외발신", "국제발신", "광고", "ad",
    "advert", "ads", "hinweis", "uwaga", "dikkat", "pengingat", "thông báo", "herinnering",
    "let op", "bilgi", "bilgilendirme", "informasi", "uyarı", "lembrete", "atenção", "ola", "olá",
    "hola", "bonjour", "hallo", "ciao", "привет", "merhaba", "halo", "xin chào", "cześć", "test",
    "fyi", "ps", "re", "fw", "fwd",
];

fn is_generic(name: &str) -> bool {
    let l = name.trim().to_lowercase();
    GENERIC.contains(&l.as_str())
}

/// The canonical name of a known service, matched against a whole name
/// ("paypal") or its first words ("Microsoft account").
fn canonical(name: &str) -> Option<&'static str> {
    let l = name.trim().to_lowercase();
    let l = l.trim_start_matches('@');
    for (canon, aliases) in SERVICES {
        for alias in *aliases {
            if l == *alias {
                return Some(canon);
            }
            if let Some(rest) = l.strip_prefix(alias)
                && rest.starts_with(|c: char| !c.is_alphanumeric())
                && alias.chars().count() >= 3
            {
                return Some(canon);
            }
        }
    }
    None
}

/// Known service names as written in text: `Canonical` and `UPPER` case of
/// the Latin names of at least four letters (and "LINE"), matched exactly.
/// [`known_in_text`] checks the word boundaries itself.
static SERVICE_FORMS: LazyLock<PatternIndex<&'static str>> = LazyLock::new(|| {
    PatternIndex::new(
        SERVICES
            .iter()
            .filter(|(canon, _)| canon.chars().count() >= 4 || *canon == "LINE")
            .flat_map(|(canon, _)| {
                [
                    (canon.to_string(), false, *canon),
                    (canon.to_uppercase(), false, *canon),
                ]
            }),
    )
});

/// Aliases in other scripts, matched against the lower-cased text with no
/// word boundary after them (CJK has no spaces).
static SERVICE_SCRIPT_ALIASES: LazyLock<PatternIndex<&'static str>> = LazyLock::new(|| {
    PatternIndex::new(SERVICES.iter().flat_map(|(canon, aliases)| {
        aliases
            .iter()
            .filter(|alias| !alias.is_ascii())
            .map(|alias| (alias.to_string(), false, *canon))
    }))
});

/// Known service names in the text: `Canonical` or `UPPER` case for Latin
/// names of at least four letters, any case for other scripts. The first
/// position holding one wins; at a position, forms win over aliases and
/// each in the order of [`SERVICES`].
fn known_in_text(t: &Text) -> Option<&'static str> {
    let forms = &*SERVICE_FORMS;
    let aliases = &*SERVICE_SCRIPT_ALIASES;
    for i in 0..t.len() {
        if t.before(i).is_alphanumeric() {
            continue;
        }
        for form in forms.starting_with(t.c[i]) {
            if form.at(&t.c, i) && !t.at(i + form.chars.len()).is_alphanumeric() {
                return Some(form.value);
            }
        }
        if let Some(alias) = aliases.starting_with(t.l[i]).iter().find(|a| a.at(&t.l, i)) {
            return Some(alias.value);
        }
    }
    None
}

/// Trims a candidate service name and rejects what cannot be one.
fn service_name(raw: &str) -> Option<String> {
    let name = raw.trim().trim_matches(|c: char| c == '"' || c == '\'');
    let chars = name.chars().count();
    if !(2..=30).contains(&chars) || is_generic(name) {
        return None;
    }
    if let Some(c) = canonical(name) {
        return Some(c.to_string());
    }
    if name.chars().any(|c| c.is_ascii_digit()) || name.split_whitespace().count() > 3 {
        return None;
    }
    let first = name.chars().next()?;
    // Latin names are capitalised; other scripts have no case.
    if first.is_ascii_lowercase() {
        return None;
    }
    // Names that hold a cue word are labels ("Verification code"), not services.
    let probe = Text::new(name);
    let marks = Marks::new(&probe, &POSITIVE_CUES);
    if marks.any() {
        return None;
    }
    Some(name.to_string())
}

/// Skips leading "<#>" and generic bracketed tags ("[Web발신]").
fn skip_preamble(s: &str) -> &str {
    let mut s = s.trim_start();
    loop {
        if let Some(rest) = s.strip_prefix("<#>") {
            s = rest.trim_start();
            continue;
        }
        let Some((open, close)) = [('[', ']'), ('【', '】'), ('(', ')')]
            .into_iter()
            .find(|(o, _)| s.starts_with(*o))
        else {
            return s;
        };
        let inner = &s[open.len_utf8()..];
        match inner.find(close) {
            Some(end) if is_generic(&inner[..end]) => {
                s = inner[end + close.len_utf8()..].trim_start();
            }
            _ => return s,
        }
    }
}

/// "[Service] …", "【Service】…", "Service: …".
fn leading_label(text: &str) -> Option<String> {
    let s = skip_preamble(text);
    for (open, close) in [('[', ']'), ('【', '】')] {
        if let Some(inner) = s.strip_prefix(open) {
            let end = inner.find(close)?;
            return service_name(&inner[..end]);
        }
    }
    let line = s.lines().next()?;
    let colon = line.find([':', '：'])?;
    let label = &line[..colon];
    if label.chars().count() > 30 {
        return None;
    }
    service_name(label)
}

/// "Your <Service> code" with a capitalised, unknown name.
fn named_before_code(text: &str) -> Option<String> {
    const POSSESSIVES: &[&str] = &[
        "your", "votre", "ton", "tu", "su", "seu", "sua", "dein", "deine", "ihr", "ihre", "il",
        "tuo", "je", "uw", "twój", "twoj",
    ];
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace())
        .filter(|w| !w.is_empty())
        .collect();
    for triple in words.windows(3) {
        let owner = triple[0].to_lowercase();
        let next = triple[2].to_lowercase();
        let next = next.trim_matches(|c: char| !c.is_alphanumeric());
        if !POSSESSIVES.contains(&owner.as_str())
            || !matches!(
                next,
                "code" | "verification" | "security" | "login" | "sign-in" | "otp"
            )
        {
            continue;
        }
        let w = triple[1].trim_matches(|c: char| !c.is_alphanumeric());
        if w.starts_with(|c: char| c.is_ascii_uppercase())
            && let Some(name) = service_name(w)
        {
            return Some(name);
        }
    }
    None
}

/// A capitalised name glued to a cue word: "Tikkie-verificatiecode",
/// "Código de verificação Mercado Pago:", "Kode OTP DANA kamu".
fn named_at_cue(t: &Text) -> Option<String> {
    const LINKS: &[&str] = &[
        "for", "from", "de", "do", "da", "für", "von", "pour", "per", "di", "untuk", "dla", "voor",
        "van", "cho", "için",
    ];
    const PRONOUNS: &[&str] = &[
        "anda", "sie", "ihr", "ihre", "ihren", "vous", "usted", "quý", "you", "your", "we", "i",
    ];
    let pos = Marks::new(t, &POSITIVE_CUES);
    let capitalised = |w: &str| {
        w.starts_with(|c: char| c.is_ascii_uppercase())
            && !PRONOUNS.contains(&w.to_lowercase().as_str())
    };
    let n = t.len();
    for start in (0..n).filter(|&i| pos.starts[i]) {
        // Before: "<Name>-<cue>".
        if t.before(start) == '-' {
            let end = start - 1;
            let mut b = end;
            while b > 0 && t.at(b - 1).is_alphanumeric() {
                b -= 1;
            }
            let word: String = t.c[b..end].iter().collect();
            if capitalised(&word)
                && let Some(name) = service_name(&word)
            {
                return Some(name);
            }
        }
    }
    // After the last cue of a run: "<cue> [link] <Name> [<Name>...]" up to
    // punctuation or a lower-case word.
    let mut i = 0;
    while i < n {
        if !pos.ends[i] || pos.starts[i] {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < n && t.at(j).is_alphanumeric() {
            j += 1;
        }
        if t.at(j) != ' ' {
            i = j.max(i + 1);
            continue;
        }
        let words: Vec<String> = t.c[j..n.min(j + 60)]
            .iter()
            .collect::<String>()
            .split(' ')
            .skip(1)
            .take(5)
            .map(str::to_string)
            .collect();
        let mut name: Vec<&str> = Vec::new();
        for (k, w) in words.iter().enumerate() {
            let bare = w.trim_end_matches([':', ',', '.', '!', '：']);
            let punct = bare.len() != w.len();
            if k == 0 && name.is_empty() && LINKS.contains(&bare) {
                continue;
            }
            if bare.is_empty()
                || !capitalised(bare)
                || Marks::new(&Text::new(bare), &POSITIVE_CUES).any()
            {
                break;
            }
            name.push(bare);
            if punct || name.len() == 3 {
                break;
            }
        }
        // Shouted text ("KODE INI KEPADA SIAPA") is not a name; a single
        // upper-case word ("OTP DANA kamu") may be.
        let shouted = name.len() > 1
            && name
                .iter()
                .any(|w| w.chars().count() > 1 && !w.chars().any(char::is_lowercase));
        if !name.is_empty()
            && !shouted
            && let Some(found) = service_name(&name.join(" "))
        {
            return Some(found);
        }
        i = j.max(i + 1);
    }
    None
}

fn find_service(t: &Text, sender: &str, has_code: bool) -> Option<String> {
    let text: String = t.c.iter().collect();
    let body = skip_preamble(&text);
    // Google's "G-123456".
    if body.starts_with("G-") && body[2..].starts_with(|c: char| c.is_ascii_digit()) {
        return Some("Google".to_string());
    }
    let sender = sender.trim();
    let alphanumeric_sender = sender.chars().any(char::is_alphabetic);
    if alphanumeric_sender && let Some(c) = canonical(sender) {
        return Some(c.to_string());
    }
    if let Some(name) = leading_label(&text) {
        return Some(name);
    }
    if alphanumeric_sender && !is_generic(sender) {
        return Some(sender.to_string());
    }
    if !has_code {
        return None;
    }
    if let Some(c) = known_in_text(t) {
        return Some(c.to_string());
    }
    named_before_code(&text).or_else(|| named_at_cue(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> Option<String> {
        extract(text, "+15550001111").map(|c| c.code)
    }

    fn is(text: &str, want: &str) {
        assert_eq!(code(text).as_deref(), Some(want), "text: {text}");
    }

    fn none(text: &str) {
        assert_eq!(code(text), None, "text: {text}");
    }

    #[test]
    fn plain_digits_with_cues() {
        is("Your verification code is 482913.", "482913");
        is("482913 is your code", "482913");
        is("Use 4829 as your login code", "4829");
        is("Your code is 2024", "2024");
    }

    #[test]
    fn separators() {
        is("Your code: 123-456", "123456");
        is("Your code: 123 456", "123456");
        is("Code 12 34 56, valid 5 minutes", "123456");
        is("Your code is 123.456", "123456");
        is("Your login code: X7K-9PQ", "X7K9PQ");
    }

    #[test]
    fn alphanumeric_and_google() {
        is("Your verification code is A1B2C3", "A1B2C3");
        is("G-482913 is your Google verification code.", "482913");
        assert_eq!(
            extract("G-482913 is your Google verification code.", "Google"),
            Some(OneTimeCode {
                code: "482913".into(),
                service: Some("Google".into())
            })
        );
    }

    #[test]
    fn scripts() {
        is("验证码１２３４５６，5分钟内有效", "123456");
        is("رمز التحقق الخاص بك هو ٤٨٢٩١٣", "482913");
        is("کد تایید شما: ۴۸۲۹۱۳ رمز", "482913");
        is("आपका ओटीपी ४८२९१३ है", "482913");
        is("您的验证码是482913，请勿泄露", "482913");
        is("認証コード：482913", "482913");
        is("인증번호 [482913]을 입력해주세요", "482913");
        is("Ваш код подтверждения: 4829", "4829");
    }

    #[test]
    fn rejects_dates() {
        none("Your code expires on 2024-06-22");
        none("Your code expires on 22/06/2024");
        none("Your code expires on 22.06.2024");
        none("Code valid until June 22 2024");
        none("Код действует до 22 июня 2024");
    }

    #[test]
    fn rejects_times() {
        none("Your code will arrive at 15:46");
        none("Use the code before 3:45pm");
    }

    #[test]
    fn rejects_amounts() {
        none("Your code for the payment of $1,234.56");
        none("Code de paiement: 1 234,56 €");
        none("Код оплаты: 500 руб");
        none("OTP for payment of ₹1500");
        none("Verification of USD 2000 transfer");
        none("Seu código de pagamento R$ 49,90");
        none("Your code saves 25% today");
    }

    #[test]
    fn rejects_phone_numbers() {
        none("Code questions? Call +14155550100");
        none("Code questions? Call (415) 555-0100");
        none("Code help line 415-555-0100");
    }

    #[test]
    fn rejects_years_and_bare_numbers() {
        none("Customers since 2019 get the new code soon");
        none("Happy new year 2025!");
        none("Your parcel 48291345 arrives today");
    }

    #[test]
    fn rejects_references() {
        none("Your order 4821 code: see app");
        none("Code sent for card ending 4821");
        none("Tracking number 48291345, code in app");
        none("Use promo code SAVE20 for 20% off");
    }

    #[test]
    fn rejects_urls_and_durations() {
        none("Verify at https://example.com/verify/482913");
        none("Your code is valid for 1440 minutes");
    }

    #[test]
    fn short_code_shaped_messages() {
        is("G-123456", "123456");
        is("123456", "123456");
    }

    #[test]
    fn odd_input_does_not_panic() {
        for text in [
            "",
            "G-",
            "G-1",
            "+",
            "(",
            ")",
            "【",
            "[abc",
            "[]",
            "1",
            "-1-",
            "x:",
            ":",
            "12:",
            "1234-",
            "-1234",
            "٤",
            "１２３４",
            "\n\n",
            "code",
            "code 1",
            "(1) 2345",
            "+ 1234",
            ") 1234",
            "<#>",
            "<#> [",
            "a/c 1234",
            "€",
            "1234€",
            "G-1234567890",
        ] {
            let _ = extract(text, "");
            let _ = extract(text, text);
            let _ = service(text, "x");
        }
    }

    #[test]
    fn long_text_stays_fast() {
        let text = "Your code is 482913, order 1234 for $5.00 on 22/06/2024. ".repeat(400);
        let started = std::time::Instant::now();
        assert_eq!(code(&text).as_deref(), Some("482913"));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn services() {
        let s = |t: &str, from: &str| extract(t, from).and_then(|c| c.service);
        assert_eq!(s("Your code is 1234", "WhatsApp"), Some("WhatsApp".into()));
        assert_eq!(
            s("[TikTok] 1234 is your code", "+1555"),
            Some("TikTok".into())
        );
        assert_eq!(s("Acme: your code is 1234", "+1555"), Some("Acme".into()));
        assert_eq!(s("Your code is 1234", "VERIFY"), None);
        assert_eq!(
            s("835102 is your Facebook confirmation code", "32665"),
            Some("Facebook".into())
        );
        assert_eq!(s("Your code is 1234", "+15550001111"), None);
    }
}
