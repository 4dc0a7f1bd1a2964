/**
 * Row → object mapping shared by the store modules. pg returns BIGINT as a string and
 * TIMESTAMPTZ as a Date; the API hands out numbers and ISO strings. A kind ending in `?`
 * is for a nullable column and keeps its null.
 */
const CONVERT = {
  number: (v: any) => Number(v),
  'number?': (v: any) => (v === null ? null : Number(v)),
  time: (v: any) => new Date(v).toISOString(),
  'time?': (v: any) => (v ? new Date(v).toISOString() : null),
} as const;

type ColumnKind = keyof typeof CONVERT;

const camelCase = (snake: string): string => snake.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

/**
 * A mapper from a row to `T`, from its columns in the order the object lists them:
 * `'id parent_version:number? created_at:time'` gives `{ id, parentVersion, createdAt }`. Only
 * the listed columns are copied, so a `SELECT *` never leaks a column (such as a run's
 * strategy state) into what the API returns.
 */
export function rowMapper<T>(columns: string): (r: Record<string, any>) => T {
  const spec = columns
    .trim()
    .split(/\s+/)
    .map((c) => {
      const [name, kind] = c.split(':') as [string, ColumnKind | undefined];
      if (kind !== undefined && !(kind in CONVERT)) throw new Error(`rowMapper: unknown column kind ${kind} of ${name}`);
      return { name, key: camelCase(name), convert: kind ? CONVERT[kind] : (v: any) => v };
    });
  return (r) => {
    const out: Record<string, unknown> = {};
    for (const c of spec) out[c.key] = c.convert(r[c.name]);
    return out as T;
  };
}
