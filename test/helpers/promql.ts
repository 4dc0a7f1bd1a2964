/**
 * Which metric names and labels a PromQL expression refers to: enough of PromQL for the
 * dashboard's queries (selectors with matchers, range vectors, aggregations with by/without,
 * vector matching, function calls, numbers). Grafana variables like $__range sit in range
 * brackets and are dropped with them.
 */
export interface Matcher {
  label: string;
  op: '=' | '!=' | '=~' | '!~';
  value: string;
}

export interface PromqlRefs {
  /** Metric name → the matchers its selectors use. */
  selectors: Map<string, Matcher[]>;
  /** Labels named in by/without/on/ignoring/group_left/group_right clauses. */
  grouping: Set<string>;
}

const KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'inf', 'nan']);
const SELECTOR = /([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}/g;
const MATCHER = /\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)/y;
const GROUPING = /\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g;
const IDENT = /[a-zA-Z_:][a-zA-Z0-9_:]*/g;

export function promqlRefs(expr: string): PromqlRefs {
  const selectors = new Map<string, Matcher[]>();
  const grouping = new Set<string>();
  const add = (name: string, matchers: Matcher[]) => selectors.set(name, [...(selectors.get(name) ?? []), ...matchers]);

  let rest = expr.replace(SELECTOR, (_all, name: string | undefined, body: string) => {
    if (!name) throw new Error(`selector without a metric name in: ${expr}`);
    const matchers: Matcher[] = [];
    MATCHER.lastIndex = 0;
    while (MATCHER.lastIndex < body.trim().length) {
      const m = MATCHER.exec(body);
      if (!m) throw new Error(`cannot read matchers '{${body}}' in: ${expr}`);
      matchers.push({ label: m[1]!, op: m[2] as Matcher['op'], value: m[3]! });
    }
    add(name, matchers);
    return ' ';
  });
  rest = rest.replace(/\[[^\]]*\]/g, ' ');
  rest = rest.replace(GROUPING, (_all, _kw: string, labels: string) => {
    for (const l of labels.split(',').map((s) => s.trim()).filter(Boolean)) grouping.add(l);
    return ' ';
  });
  rest = rest.replace(/"(?:[^"\\]|\\.)*"/g, ' ');
  for (const m of rest.matchAll(IDENT)) {
    const after = rest.slice(m.index! + m[0].length);
    if (/^\s*\(/.test(after) || KEYWORDS.has(m[0].toLowerCase())) continue; // a function call or keyword
    if (/\d$/.test(rest.slice(0, m.index!)) || /^e[+-]?\d/.test(m[0])) continue; // part of a number like 1e3
    add(m[0], []);
  }
  return { selectors, grouping };
}

/** Labels a Grafana legend format like `{{node}} {{route}}` prints. */
export const legendLabels = (format: string) => [...format.matchAll(/\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}/g)].map((m) => m[1]!);
