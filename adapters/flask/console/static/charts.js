// Metric charts drawn as inline SVG: the gray group's mean against the baseline's per time
// bucket, the judge's verdicts and the canary steps marked on the time axis. No library, no CDN.
import { s } from './dom.js';
import { fmtNumber, fmtShortTime, label, t } from './i18n.js';

const W = 640;
const H = 220;
const PAD = { left: 56, right: 16, top: 16, bottom: 40 };

function extent(values) {
  let low = Math.min(...values);
  let high = Math.max(...values);
  if (!Number.isFinite(low) || !Number.isFinite(high)) return [0, 1];
  if (low === high) {
    const pad = Math.abs(low) * 0.1 || 1;
    low -= pad;
    high += pad;
  }
  const margin = (high - low) * 0.08;
  return [low > 0 && low - margin < 0 ? 0 : low - margin, high + margin];
}

function ticks(low, high, count) {
  const out = [];
  for (let i = 0; i <= count; i += 1) out.push(low + ((high - low) * i) / count);
  return out;
}

const OUTCOME_CLASS = { PASS: 'verdict-pass', FAIL: 'verdict-fail', INCONCLUSIVE: 'verdict-inconclusive' };

/** One metric's chart: {metric, gray: [{at, mean, count}], baseline: [...]}, with the marks. */
export function metricChart(series, metrics) {
  const since = Date.parse(metrics.since);
  const until = Date.parse(metrics.until);
  const points = [...series.gray, ...series.baseline];
  const times = points.map((p) => Date.parse(p.at));
  const marks = [...metrics.verdicts, ...metrics.steps].map((m) => Date.parse(m.at));
  let start = Math.min(...times, ...marks);
  let end = Math.max(...times, ...marks);
  if (!Number.isFinite(start)) {
    start = since;
    end = until;
  }
  if (start === end) {
    start -= metrics.bucketSeconds * 1000;
    end += metrics.bucketSeconds * 1000;
  }
  const [low, high] = extent(points.map((p) => p.mean));
  const x = (ms) => PAD.left + ((ms - start) / (end - start)) * (W - PAD.left - PAD.right);
  const y = (v) => H - PAD.bottom - ((v - low) / (high - low)) * (H - PAD.top - PAD.bottom);

  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': t('chart.aria', { metric: series.metric }), dataset: { metric: series.metric } });
  svg.appendChild(s('title', {}, t('chart.aria', { metric: series.metric })));
  const grid = s('g', { class: 'grid' });
  for (const value of ticks(low, high, 4)) {
    grid.appendChild(s('line', { x1: PAD.left, x2: W - PAD.right, y1: y(value), y2: y(value) }));
    grid.appendChild(s('text', { x: PAD.left - 6, y: y(value) + 4, 'text-anchor': 'end', class: 'axis-label' }, fmtNumber(value, 4)));
  }
  for (const ms of ticks(start, end, 4)) {
    grid.appendChild(s('text', { x: x(ms), y: H - PAD.bottom + 16, 'text-anchor': 'middle', class: 'axis-label' }, fmtShortTime(new Date(ms).toISOString())));
  }
  grid.appendChild(s('line', { class: 'axis', x1: PAD.left, x2: W - PAD.right, y1: H - PAD.bottom, y2: H - PAD.bottom }));
  svg.appendChild(grid);

  const markGroup = s('g', { class: 'marks' });
  for (const step of metrics.steps) {
    const at = x(Date.parse(step.at));
    markGroup.appendChild(s('line', { class: 'step-mark', x1: at, x2: at, y1: PAD.top, y2: H - PAD.bottom }, s('title', {}, `${label('log', step.action)} ${step.percentage ?? ''}%`)));
    if (step.percentage !== undefined && step.percentage !== null) {
      const nearEnd = at > W - PAD.right - 40;
      markGroup.appendChild(s('text', { class: 'step-label', x: nearEnd ? at - 3 : at + 3, y: PAD.top + 10, 'text-anchor': nearEnd ? 'end' : 'start' }, `${fmtNumber(step.percentage)}%`));
    }
  }
  for (const verdict of metrics.verdicts) {
    const at = x(Date.parse(verdict.at));
    const check = (verdict.checks || []).find((c) => c.metric === series.metric);
    const outcome = (check && check.outcome) || verdict.outcome;
    const cls = OUTCOME_CLASS[outcome] || 'verdict-other';
    markGroup.appendChild(
      s(
        'g',
        { class: ['verdict', cls], dataset: { outcome: outcome || '' } },
        s('line', { x1: at, x2: at, y1: PAD.top, y2: H - PAD.bottom }),
        s('circle', { cx: at, cy: H - PAD.bottom, r: 5 }),
        s('title', {}, `${label('log', verdict.action)} · ${label('outcome', outcome)}${check && check.pValue !== undefined && check.pValue !== null ? ` · p=${fmtNumber(check.pValue, 4)}` : ''}`),
      ),
    );
  }
  svg.appendChild(markGroup);

  const line = (data, cls) => {
    if (!data.length) return null;
    const sorted = [...data].sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
    const path = sorted.map((p, i) => `${i ? 'L' : 'M'}${x(Date.parse(p.at)).toFixed(1)},${y(p.mean).toFixed(1)}`).join(' ');
    const group = s('g', { class: ['series', cls] }, s('path', { d: path }));
    for (const p of sorted) {
      group.appendChild(s('circle', { cx: x(Date.parse(p.at)), cy: y(p.mean), r: 2.5 }, s('title', {}, `${fmtShortTime(p.at)} · ${fmtNumber(p.mean, 4)} (n=${p.count})`)));
    }
    return group;
  };
  const baseline = line(series.baseline, 'series-baseline');
  const gray = line(series.gray, 'series-gray');
  if (baseline) svg.appendChild(baseline);
  if (gray) svg.appendChild(gray);

  const legend = s('g', { class: 'legend', transform: `translate(${PAD.left}, ${H - 10})` });
  const entries = [
    ['series-gray', t('chart.gray')],
    ['series-baseline', t('chart.baseline')],
    ['verdict-pass', label('outcome', 'PASS')],
    ['verdict-fail', label('outcome', 'FAIL')],
    ['step-mark', t('chart.step')],
  ];
  entries.forEach(([cls, text], index) => {
    const offset = index * 110;
    legend.appendChild(s('rect', { class: ['swatch', cls], x: offset, y: -8, width: 12, height: 8 }));
    legend.appendChild(s('text', { x: offset + 16, y: 0, class: 'axis-label' }, text));
  });
  svg.appendChild(legend);
  return svg;
}
