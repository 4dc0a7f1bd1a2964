import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root when this runs from TypeScript sources (services/shared/ is two levels down). */
const SOURCE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * A compiled module beside the calling one (`moduleUrl`: its import.meta.url), for worker
 * threads, which need a JavaScript file: the sibling when the caller runs compiled, else its
 * copy under dist/ (tests run the TypeScript sources; npm run build first). Undefined when
 * there is none.
 */
export function compiledSibling(moduleUrl: string, file: string): string | undefined {
  const here = fileURLToPath(moduleUrl);
  const candidate = here.endsWith('.js') ? path.join(path.dirname(here), file) : path.join(SOURCE_ROOT, 'dist', path.relative(SOURCE_ROOT, path.dirname(here)), file);
  return existsSync(candidate) ? candidate : undefined;
}
