// The plan list: filters (app, environment, status, text), paging, and each plan's status,
// strategy, progress and last action. Filters live in the URL's hash, so a list can be shared.
import * as api from './api.js';
import { openPlanDialog } from './dialog.js';
import { h, replace } from './dom.js';
import { fmtTime, label, t } from './i18n.js';
import { emptyRow, errorText, pager, progressBar, statusBadge, strategySummary } from './ui.js';

const STATUSES = ['DRAFT', 'ACTIVE', 'PAUSED', 'COMPLETED', 'ROLLBACK'];
const PAGE_SIZE = 20;

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

  fetchPlans() {
    const { appName, environment, status, q } = this.filters;
    return api.get('/plans', { appName, environment, status, search: q, page: this.page, pageSize: PAGE_SIZE });
  }

  async refresh() {
    let page;
    try {
      page = await this.fetchPlans();
    } catch (error) {
      this.problem.hidden = false;
      replace(this.problem, errorText(error));
      return;
    }
    this.problem.hidden = true;
    const key = JSON.stringify(page);
    if (key === this.lastKey) return;
    this.lastKey = key;
    if (!page.items.length) {
      replace(this.body, emptyRow(6, Object.values(this.filters).some(Boolean) ? t('list.noMatch') : t('list.empty')));
    } else {
      replace(this.body, page.items.map((plan) => this.row(plan)));
    }
    replace(
      this.footer,
      pager(page.page, page.pageSize, page.total, (next) => {
        this.page = next;
        this.saveHash();
        this.refresh();
      }),
    );
  }

  row(plan) {
    const last = plan.lastAction;
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
