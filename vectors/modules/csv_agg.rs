//! csv_agg: aggregate a sales CSV read from stdin and print a JSON summary.
//!
//! Input (stdin): a header line followed by rows of
//!     region,product,units,price_cents
//! where `units` and `price_cents` are unsigned decimal integers.
//!
//! Optional argv[1]: only rows whose region equals this string are
//! aggregated (malformed rows are counted regardless of the filter).
//!
//! Output (stdout): one JSON object, keys sorted, followed by a newline.
//! Malformed rows never cause a panic; they are counted in "bad_rows" and
//! the first few offending line numbers are listed in "bad_row_lines".
//!
//! Determinism: only BTreeMap is used, so output order is fixed.
//! Exit status: 0 on success, 1 if stdin could not be read.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

const EXPECTED_HEADER: &str = "region,product,units,price_cents";
const MAX_BAD_LINES_LISTED: usize = 10;

#[derive(Default)]
struct Group {
    count: u64,
    units: u64,
    revenue: u128,
    min_price: u64,
    max_price: u64,
}

impl Group {
    fn add(&mut self, units: u64, price: u64) {
        if self.count == 0 {
            self.min_price = price;
            self.max_price = price;
        } else {
            if price < self.min_price {
                self.min_price = price;
            }
            if price > self.max_price {
                self.max_price = price;
            }
        }
        self.count += 1;
        self.units = self.units.saturating_add(units);
        self.revenue += units as u128 * price as u128;
    }

    fn write_json(&self, out: &mut String) {
        out.push_str("{\"count\":");
        out.push_str(&self.count.to_string());
        out.push_str(",\"max_price_cents\":");
        out.push_str(&self.max_price.to_string());
        out.push_str(",\"min_price_cents\":");
        out.push_str(&self.min_price.to_string());
        out.push_str(",\"revenue_cents\":");
        out.push_str(&self.revenue.to_string());
        out.push_str(",\"units\":");
        out.push_str(&self.units.to_string());
        out.push('}');
    }
}

struct Row<'a> {
    region: &'a str,
    product: &'a str,
    units: u64,
    price: u64,
}

/// Strict unsigned decimal parse: ASCII digits only, no sign, no spaces.
fn parse_uint(field: &str) -> Option<u64> {
    if field.is_empty() || !field.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    field.parse::<u64>().ok()
}

fn parse_row(line: &str) -> Option<Row<'_>> {
    let mut fields = line.split(',');
    let region = fields.next()?;
    let product = fields.next()?;
    let units = parse_uint(fields.next()?)?;
    let price = parse_uint(fields.next()?)?;
    if fields.next().is_some() || region.is_empty() || product.is_empty() {
        return None;
    }
    Some(Row { region, product, units, price })
}

fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn push_group_map(out: &mut String, map: &BTreeMap<String, Group>) {
    out.push('{');
    for (i, (name, group)) in map.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_string(out, name);
        out.push(':');
        group.write_json(out);
    }
    out.push('}');
}

fn main() {
    let filter: Option<String> = std::env::args().nth(1);

    let mut raw = Vec::new();
    if let Err(e) = io::stdin().read_to_end(&mut raw) {
        eprintln!("csv_agg: cannot read stdin: {}", e);
        std::process::exit(1);
    }
    let text = String::from_utf8_lossy(&raw);

    let mut regions: BTreeMap<String, Group> = BTreeMap::new();
    let mut products: BTreeMap<String, Group> = BTreeMap::new();
    let mut total = Group::default();
    let mut bad_rows: u64 = 0;
    let mut bad_lines: Vec<u64> = Vec::new();
    let mut skipped_by_filter: u64 = 0;
    let mut header_ok = false;
    let mut saw_header = false;

    for (idx, line) in text.split('\n').enumerate() {
        let line_no = idx as u64 + 1;
        let line = line.strip_suffix('\r').unwrap_or(line);
        if !saw_header {
            saw_header = true;
            header_ok = line.trim() == EXPECTED_HEADER;
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        match parse_row(line) {
            Some(row) => {
                if let Some(f) = &filter {
                    if row.region != f {
                        skipped_by_filter += 1;
                        continue;
                    }
                }
                regions
                    .entry(row.region.to_string())
                    .or_default()
                    .add(row.units, row.price);
                products
                    .entry(row.product.to_string())
                    .or_default()
                    .add(row.units, row.price);
                total.add(row.units, row.price);
            }
            None => {
                bad_rows += 1;
                if bad_lines.len() < MAX_BAD_LINES_LISTED {
                    bad_lines.push(line_no);
                }
            }
        }
    }

    // Keys are emitted in lexicographic (byte) order.
    let mut out = String::with_capacity(4096);
    out.push_str("{\"bad_row_lines\":[");
    for (i, n) in bad_lines.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&n.to_string());
    }
    out.push_str("],\"bad_rows\":");
    out.push_str(&bad_rows.to_string());
    out.push_str(",\"filter\":");
    match &filter {
        Some(f) => push_json_string(&mut out, f),
        None => out.push_str("null"),
    }
    out.push_str(",\"header_ok\":");
    out.push_str(if header_ok { "true" } else { "false" });
    out.push_str(",\"products\":");
    push_group_map(&mut out, &products);
    out.push_str(",\"regions\":");
    push_group_map(&mut out, &regions);
    out.push_str(",\"rows\":");
    out.push_str(&total.count.to_string());
    out.push_str(",\"skipped_by_filter\":");
    out.push_str(&skipped_by_filter.to_string());
    out.push_str(",\"total_revenue_cents\":");
    out.push_str(&total.revenue.to_string());
    out.push_str(",\"total_units\":");
    out.push_str(&total.units.to_string());
    out.push_str("}\n");

    let stdout = io::stdout();
    let mut lock = stdout.lock();
    if lock.write_all(out.as_bytes()).and_then(|_| lock.flush()).is_err() {
        std::process::exit(1);
    }
}
