/**
 * Bodies every JSON reader of serving must give JSON.parse's answer for: strings holding
 * brackets, commas and escapes, empty and ragged arrays, a `__proto__` key, a bare array.
 */
export const TRICKY_JSON_DOCS: unknown[] = [
  { instances: [[0, 0.5, 1], [1, 0.25, 0]] },
  { id: 'a,]["\\"', inputs: [{ name: 'images', shape: [2, 3], datatype: 'FP32', data: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6] }], outputs: [{ name: 'class' }] },
  { instances: [{ images: [1, 2] }, { images: ['[', ']', ',', '"', '\\', '{'] }], note: 'x'.repeat(50) },
  { instances: [] },
  { instances: [[], [[]], [[[]]]], more: [1] },
  JSON.parse('{"__proto__": [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20], "a": 1}'),
  [[1, 2, 3], [4, 5, 6]],
];
