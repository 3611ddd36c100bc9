// Original vs gray value, line by line (a longest-common-subsequence diff; values are small).
import { h } from './dom.js';
import { t } from './i18n.js';

const MAX_CELLS = 250000;

function lcsDiff(before, after) {
  const n = before.length;
  const m = after.length;
  if (n * m > MAX_CELLS) {
    return [...before.map((text) => ({ kind: 'removed', text })), ...after.map((text) => ({ kind: 'added', text }))];
  }
  const table = Array.from({ length: n + 1 }, () => new Array(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i -= 1) {
    for (let j = m - 1; j >= 0; j -= 1) {
      table[i][j] = before[i] === after[j] ? table[i + 1][j + 1] + 1 : Math.max(table[i + 1][j], table[i][j + 1]);
    }
  }
  const out = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (before[i] === after[j]) {
      out.push({ kind: 'same', text: before[i] });
      i += 1;
      j += 1;
    } else if (table[i + 1][j] >= table[i][j + 1]) {
      out.push({ kind: 'removed', text: before[i] });
      i += 1;
    } else {
      out.push({ kind: 'added', text: after[j] });
      j += 1;
    }
  }
  while (i < n) out.push({ kind: 'removed', text: before[i++] });
  while (j < m) out.push({ kind: 'added', text: after[j++] });
  return out;
}

const SIGN = { same: ' ', removed: '-', added: '+' };

/** original: string|null (null: not set / not snapshotted), gray: string|null */
export function diffView(original, gray, originalLabel) {
  const before = original === null || original === undefined ? [] : String(original).split('\n');
  const after = gray === null || gray === undefined ? [] : String(gray).split('\n');
  const rows = lcsDiff(before, after);
  return h(
    'div',
    { class: 'diff' },
    h(
      'div',
      { class: 'diff-sides' },
      h('div', { class: 'diff-side' }, h('div', { class: 'diff-label' }, originalLabel || t('detail.original')), h('pre', { class: 'mono diff-old', dataset: { testid: 'original' } }, original === null || original === undefined ? t('dialog.notSet') : String(original))),
      h('div', { class: 'diff-side' }, h('div', { class: 'diff-label' }, t('detail.gray')), h('pre', { class: 'mono diff-new', dataset: { testid: 'gray' } }, gray === null || gray === undefined ? t('detail.noGray') : String(gray))),
    ),
    rows.some((row) => row.kind !== 'same')
      ? h('pre', { class: 'diff-lines mono', 'aria-label': t('detail.diff') }, rows.map((row) => h('span', { class: `diff-${row.kind}` }, `${SIGN[row.kind]} ${row.text}\n`)))
      : h('p', { class: 'muted small' }, t('detail.noChange')),
  );
}
