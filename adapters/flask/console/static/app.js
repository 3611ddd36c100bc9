// The console's entry point: settings, login, the header, the hash router and the live poll.
import * as api from './api.js';
import { openPlanDialog } from './dialog.js';
import { DetailView } from './detail.js';
import { h, replace } from './dom.js';
import { LANGUAGES, lang, onLang, setLang, t } from './i18n.js';
import { ListView } from './list.js';
import { loginView } from './login.js';
import { MessagesView } from './messages.js';
import { errorText, toast } from './ui.js';

const POLL_MS = 2000;

const app = {
  settings: null,
  actor: null,
  view: null,
  root: document.getElementById('app'),
  main: null,
  badge: null,
  polling: false,
  timer: null,
};

function navigate(hash) {
  if (window.location.hash === hash) route();
  else window.location.hash = hash;
}

function parseHash() {
  const raw = window.location.hash.replace(/^#/, '') || '/plans';
  const [path, query] = raw.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  return { parts, params: new URLSearchParams(query || '') };
}

function header() {
  app.badge = h('span', { class: 'badge-count', dataset: { testid: 'unread' }, hidden: true }, '0');
  const language = h(
    'select',
    { class: 'lang', 'aria-label': t('header.language'), name: 'lang', onChange: (event) => setLang(event.target.value) },
    LANGUAGES.map(([code, name]) => h('option', { value: code, selected: code === lang() }, name)),
  );
  return h(
    'header',
    { class: 'topbar' },
    h('a', { class: 'brand', href: '#/plans' }, t('app.title')),
    h('nav', { class: 'topnav' }, h('a', { href: '#/plans' }, t('nav.plans'))),
    h('div', { class: 'spacer' }),
    h('a', { class: 'messages-link', href: '#/messages', 'aria-label': t('nav.messages'), title: t('nav.messages') }, h('span', { class: 'bell' }, t('nav.messages')), app.badge),
    app.actor ? h('span', { class: 'actor', title: t('header.actor') }, app.actor) : null,
    language,
    app.actor !== '' ? h('button', { type: 'button', class: 'logout', onClick: logout }, t('header.logout')) : null,
  );
}

async function logout() {
  try {
    await api.logout();
  } catch (error) {
    toast(errorText(error), 'error');
  }
  app.actor = null;
  render();
}

function showLogin() {
  stopPolling();
  app.view = null;
  replace(
    app.root,
    loginView(async (actor) => {
      app.actor = actor;
      render();
    }),
  );
}

function render() {
  if (app.actor === null) {
    showLogin();
    return;
  }
  app.main = h('main', { class: 'content' });
  replace(app.root, header(), app.main);
  route();
  startPolling();
}

function route() {
  if (app.actor === null || !app.main) return;
  if (app.view && app.view.destroy) app.view.destroy();
  const { parts, params } = parseHash();
  const context = { settings: app.settings, navigate, actor: app.actor, refreshBadge };
  let view;
  if (parts[0] === 'messages') {
    view = new MessagesView(context);
  } else if (parts[0] === 'plans' && parts[1] && parts[1] !== 'new') {
    view = new DetailView(context, parts[1]);
  } else {
    view = new ListView(context, params);
    if (parts[1] === 'new') {
      openPlanDialog(context, null, (plan) => navigate(`#/plans/${encodeURIComponent(plan.planId)}`), () => {
        window.history.replaceState(null, '', '#/plans');
      });
    }
  }
  app.view = view;
  replace(app.main, view.el);
  document.title = `${view.title ? `${view.title()} · ` : ''}${t('app.title')}`;
  view.refresh().catch((error) => toast(errorText(error), 'error'));
  refreshBadge();
}

async function refreshBadge() {
  if (!app.badge) return;
  try {
    const { unreadCount } = await api.get('/messages/unread-count');
    app.badge.hidden = unreadCount === 0;
    replace(app.badge, unreadCount > 99 ? '99+' : String(unreadCount));
  } catch {
    app.badge.hidden = true;
  }
}

async function tick() {
  if (!document.hidden && app.view && !app.polling) {
    app.polling = true;
    try {
      await Promise.all([app.view.refresh(true), refreshBadge()]);
    } catch (error) {
      if (error.status !== 401) console.warn('grayrelease: refresh failed', error.message);
    } finally {
      app.polling = false;
    }
  }
}

function startPolling() {
  stopPolling();
  app.timer = window.setInterval(tick, POLL_MS);
}

function stopPolling() {
  if (app.timer !== null) window.clearInterval(app.timer);
  app.timer = null;
}

async function boot() {
  try {
    const answer = await fetch('console.json', { cache: 'no-store', credentials: 'same-origin' });
    app.settings = await answer.json();
  } catch {
    app.settings = { transitions: {}, strategies: [], channels: [], events: [], defaultEvents: [], approvalEnvironments: [], defaultGroup: 'default' };
  }
  api.onUnauthenticated(() => {
    if (app.actor !== null && app.actor !== '') toast(t('login.expired'), 'error');
    app.actor = null;
    showLogin();
  });
  try {
    app.actor = await api.session();
  } catch (error) {
    app.actor = null;
    toast(errorText(error), 'error');
  }
  window.addEventListener('hashchange', route);
  onLang(() => render());
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) tick();
  });
  render();
}

boot();
