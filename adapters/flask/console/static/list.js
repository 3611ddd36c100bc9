// The plan list: filters (app, environment, status, text), paging, and each plan's status,
// strategy, progress and last action. Filters live in the URL's hash, so a list can be shared.
import * as api from './api.js';
import { openPlanDialog } from './dialog.js';
import { h, replace } from './dom.js';
import { fmtTime, label, t } from './i18n.js';
import { emptyRow, errorText, pager, progressBar, statusBadge, strategySummary } from './ui.js';

const STATUSES = ['DRAFT', 'ACTIVE', 'PAUSED', 'COMPLETED', 'ROLLBACK'];
const PAGE_SIZE = 20;
const SEARCH_WINDOW = 200; // the API has no text search: the newest plans are searched here

export class ListView {
  constructor(context, params) {
    this.context = context;
    this.filters = {
      appName: params.get('appName') || '',
      environment: params.get('environment') || '',
      status: params.get('status') || '',
      q: params.get('q') || '',
    };
    this.page = Math.max(1, Number(params.get('page')) || 1);
    this.lastKey = null;
    this.body = h('tbody');
    this.footer = h('div', { class: 'list-footer' });
    this.problem = h('p', { class: 'banner banner-error', role: 'alert', hidden: true });
    this.el = h('section', { class: 'plan-list' }, this.toolbar(), this.problem, this.table(), this.footer);
  }

  title() {
    return t('nav.plans');
  }

  toolbar() {
    let timer = null;
    const changed = () => {
      window.clearTimeout(timer);
      timer = window.setTimeout(() => {
        this.page = 1;
        this.saveHash();
        this.refresh();
      }, 250);
    };
    const input = (name, placeholder) => {
      const el = h('input', { type: name === 'q' ? 'search' : 'text', name, value: this.filters[name], placeholder, 'aria-label': placeholder });
      el.addEventListener('input', () => {
        this.filters[name] = el.value.trim();
        changed();
      });
      return el;
    };
    const status = h(
      'select',
      { name: 'status', 'aria-label': t('list.status') },
      h('option', { value: '' }, t('list.anyStatus')),
      STATUSES.map((s) => h('option', { value: s, selected: this.filters.status === s }, label('status', s))),
    );
    status.addEventListener('change', () => {
      this.filters.status = status.value;
      changed();
    });
    return h(
      'div',
      { class: 'toolbar' },
      h('h1', {}, t('nav.plans')),
      h(
        'div',
        { class: 'filters' },
        input('appName', t('list.app')),
        input('environment', t('list.environment')),
        status,
        input('q', t('list.search')),
      ),
      h('button', { type: 'button', class: 'primary', dataset: { action: 'new-plan' }, onClick: () => this.create() }, t('list.new')),
    );
  }

  table() {
    const columns = ['list.name', 'list.where', 'list.strategy', 'list.status', 'list.progress', 'list.lastAction'];
    return h('table', { class: 'plans' }, h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col' }, t(c))))), this.body);
  }

  create() {
    openPlanDialog(this.context, null, (plan) => this.context.navigate(`#/plans/${encodeURIComponent(plan.planId)}`));
  }

  saveHash() {
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(this.filters)) if (value) params.set(name, value);
    if (this.page > 1) params.set('page', String(this.page));
    const text = params.toString();
    window.history.replaceState(null, '', `#/plans${text ? `?${text}` : ''}`);
  }

  async fetchPlans() {
    const query = { appName: this.filters.appName, environment: this.filters.environment, status: this.filters.status };
    const text = this.filters.q.toLowerCase();
    if (!text) {
      return api.get('/plans', { ...query, page: this.page, pageSize: PAGE_SIZE });
    }
    const answer = await api.get('/plans', { ...query, page: 1, pageSize: SEARCH_WINDOW });
    const matched = answer.items.filter((plan) =>
      [plan.planName, plan.planId, plan.description || '', plan.appName, plan.environment, plan.groupName, ...plan.configKeys, plan.createdBy]
        .some((field) => String(field).toLowerCase().includes(text)),
    );
    const start = (this.page - 1) * PAGE_SIZE;
    return { items: matched.slice(start, start + PAGE_SIZE), total: matched.length, page: this.page, pageSize: PAGE_SIZE, searched: answer.total > SEARCH_WINDOW };
  }

  async lastActions() {
    try {
      const answer = await api.get('/logs', { appName: this.filters.appName, environment: this.filters.environment, pageSize: 200 });
      const latest = {};
      for (const row of answer.items) {
        if (row.action === 'DENIED' || latest[row.planId]) continue;
        latest[row.planId] = row;
      }
      return latest;
    } catch {
      return {}; // a viewer of a single app may not search the whole trail: show updates only
    }
  }

  async refresh() {
    let page;
    let latest;
    try {
      [page, latest] = await Promise.all([this.fetchPlans(), this.lastActions()]);
    } catch (error) {
      this.problem.hidden = false;
      replace(this.problem, errorText(error));
      return;
    }
    this.problem.hidden = true;
    const key = JSON.stringify([page, Object.values(latest).map((r) => r.id)]);
    if (key === this.lastKey) return;
    this.lastKey = key;
    if (!page.items.length) {
      replace(this.body, emptyRow(6, Object.values(this.filters).some(Boolean) ? t('list.noMatch') : t('list.empty')));
    } else {
      replace(this.body, page.items.map((plan) => this.row(plan, latest[plan.planId])));
    }
    replace(
      this.footer,
      pager(page.page, page.pageSize, page.total, (next) => {
        this.page = next;
        this.saveHash();
        this.refresh();
      }),
      page.searched ? h('p', { class: 'muted' }, t('list.searchWindow', { n: SEARCH_WINDOW })) : null,
    );
  }

  row(plan, last) {
    const href = `#/plans/${encodeURIComponent(plan.planId)}`;
    const action = last
      ? h('div', { class: 'last-action' }, h('strong', {}, label('log', last.action)), ' ', h('span', { class: 'muted' }, t('list.by', { actor: last.actor })), h('div', { class: 'muted small' }, fmtTime(last.at)))
      : h('div', { class: 'last-action' }, h('span', { class: 'muted' }, t('list.updatedBy', { actor: plan.updatedBy })), h('div', { class: 'muted small' }, fmtTime(plan.updatedAt)));
    return h(
      'tr',
      { dataset: { planId: plan.planId, status: plan.status } },
      h('td', {}, h('a', { href, class: 'plan-name' }, plan.planName), h('div', { class: 'muted small mono' }, plan.planId)),
      h('td', {}, h('div', {}, plan.appName), h('div', { class: 'muted small' }, `${plan.environment} / ${plan.groupName}`)),
      h('td', {}, h('div', {}, label('strategy', plan.grayStrategy)), h('div', { class: 'muted small' }, strategySummary(plan))),
      h('td', {}, statusBadge(plan.status)),
      h('td', {}, progressBar(plan)),
      h('td', {}, action),
    );
  }

  destroy() {}
}
