// Chinese and English: the browser's language by default, switchable, remembered.
import en from './i18n/en.js';
import zh from './i18n/zh.js';

const TABLES = { en, zh };
const STORAGE = 'grayrelease.lang';
let current = pick();
const listeners = [];

function pick() {
  let saved = null;
  try {
    saved = window.localStorage.getItem(STORAGE);
  } catch {
    saved = null;
  }
  if (saved && TABLES[saved]) return saved;
  const wanted = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || 'en'];
  for (const tag of wanted) {
    const base = String(tag).toLowerCase().split('-')[0];
    if (TABLES[base]) return base;
  }
  return 'en';
}

export function lang() {
  return current;
}

export const LANGUAGES = [
  ['zh', '中文'],
  ['en', 'English'],
];

export function setLang(code) {
  if (!TABLES[code] || code === current) return;
  current = code;
  try {
    window.localStorage.setItem(STORAGE, code);
  } catch {
    /* private mode: the choice lasts for this page */
  }
  document.documentElement.lang = code === 'zh' ? 'zh-CN' : 'en';
  listeners.forEach((fn) => fn(code));
}

export function onLang(fn) {
  listeners.push(fn);
}

/** t('plans.count', {n: 3}): the message in the current language, {name}s filled in. */
export function t(key, params) {
  let text = TABLES[current][key];
  if (text === undefined) text = TABLES.en[key];
  if (text === undefined) return key;
  if (params) {
    text = text.replace(/\{(\w+)\}/g, (whole, name) => (name in params ? String(params[name]) : whole));
  }
  return text;
}

/** A label for a wire value (status, strategy, audit action), or the value itself. */
export function label(group, value) {
  const key = `${group}.${value}`;
  const text = TABLES[current][key] || TABLES.en[key];
  return text === undefined ? String(value) : text;
}

function locale() {
  return current === 'zh' ? 'zh-CN' : 'en-GB';
}

// Times are the browser's own (Asia/Shanghai for most of our operators), with the zone named,
// so two people comparing a page and a log line know which clock each means.
export function fmtTime(iso) {
  if (!iso) return '—';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return date.toLocaleString(locale(), {
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
    hour12: false,
    timeZoneName: 'short',
  });
}

export function fmtShortTime(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return date.toLocaleTimeString(locale(), { hour: '2-digit', minute: '2-digit', hour12: false });
}

export function fmtNumber(value, digits = 2) {
  if (value === null || value === undefined || Number.isNaN(value)) return '—';
  return Number(value).toLocaleString(locale(), { maximumFractionDigits: digits });
}

document.documentElement.lang = current === 'zh' ? 'zh-CN' : 'en';
