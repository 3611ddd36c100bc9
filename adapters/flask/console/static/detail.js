// A plan's detail: status, progress and the canary steps, the action buttons the state machine
// allows, approval, each key's original and gray value, the instances that got the gray value,
// the metric charts with the judge's verdicts, and the audit log. Polled every 2 seconds.
import * as api from './api.js';
import { metricChart } from './charts.js';
import { openPlanDialog } from './dialog.js';
import { diffView } from './diff.js';
import { h, replace } from './dom.js';
import { fmtNumber, fmtTime, label, t } from './i18n.js';
import { confirmDialog, emptyRow, errorText, itemBadge, pager, progressBar, statusBadge, strategySummary, toast } from './ui.js';

const RANGES = [
  ['1h', 3600],
  ['6h', 6 * 3600],
  ['24h', 24 * 3600],
  ['7d', 7 * 86400],
  ['30d', 30 * 86400],
];
const LOG_PAGE = 200;
const INSTANCE_PAGE = 20;
const STEP_ACTIONS = new Set(['STARTED', 'STEPPED', 'PROMOTED', 'RESUMED', 'PAUSED', 'COMPLETED', 'ROLLED_BACK', 'AUTO_ROLLBACK']);

function section(title, body, extra) {
  return h('section', { class: 'card' }, h('div', { class: 'card-head' }, h('h2', {}, title), extra || null), body);
}

export class DetailView {
  constructor(context, planId) {
    this.context = context;
    this.planId = planId;
    this.plan = null;
    this.logs = [];
    this.seenLogs = null;
    this.instancePage = 1;
    this.range = 6 * 3600;
    this.keys = {};
    this.busy = false;
    this.parts = {
      head: h('div', { class: 'detail-head' }, h('p', { class: 'muted' }, t('common.loading'))),
      problem: h('p', { class: 'banner banner-error', role: 'alert', hidden: true }),
      actions: h('div', { class: 'actions', role: 'toolbar', 'aria-label': t('detail.actions') }),
      approval: h('div', { class: 'approval' }),
      progress: h('div', { class: 'progress-panel' }),
      items: h('div', { class: 'items' }),
      rules: h('div', { class: 'rules' }),
      charts: h('div', { class: 'charts' }),
      instances: h('div', { class: 'instances' }),
      logs: h('div', { class: 'logs' }),
    };
    const rangeSelect = h(
      'select',
      { name: 'range', 'aria-label': t('detail.range'), onChange: (event) => { this.range = Number(event.target.value); this.keys.metrics = null; this.refresh(); } },
      RANGES.map(([name, seconds]) => h('option', { value: String(seconds), selected: seconds === this.range }, t(`range.${name}`))),
    );
    const p = this.parts;
    this.el = h(
      'article',
      { class: 'plan-detail' },
      h('p', { class: 'back' }, h('a', { href: '#/plans' }, `← ${t('nav.plans')}`)),
      p.head,
      p.problem,
      h('div', { class: 'action-bar' }, p.actions, p.approval),
      section(t('detail.progress'), p.progress),
      section(t('detail.items'), p.items),
      section(t('detail.rules'), p.rules),
      section(t('detail.metrics'), p.charts, rangeSelect),
      section(t('detail.instances'), p.instances),
      section(t('detail.log'), p.logs),
    );
  }

  title() {
    return this.plan ? this.plan.planName : t('detail.title');
  }

  changed(name, value) {
    const key = JSON.stringify(value);
    if (this.keys[name] === key) return false;
    this.keys[name] = key;
    return true;
  }

  async refresh() {
    let plan;
    try {
      plan = await api.get(api.planPath(this.planId));
    } catch (error) {
      this.problem(error);
      if (error.status === 404) {
        replace(this.parts.head, h('h1', {}, t('detail.gone')));
        replace(this.parts.actions);
      }
      return;
    }
    this.parts.problem.hidden = true;
    const [logs, instances, metrics] = await Promise.all([
      this.fetchLogs().catch((error) => ({ error })),
      api.get(`${api.planPath(this.planId)}/instances`, { page: this.instancePage, pageSize: INSTANCE_PAGE }).catch((error) => ({ error })),
      this.fetchMetrics(plan).catch((error) => ({ error })),
    ]);
    this.plan = plan;
    if (!logs.error) this.logs = logs;
    const approval = this.approvalState(plan);
    if (this.changed('plan', plan)) {
      document.title = `${plan.planName} · ${t('app.title')}`;
      this.renderHead(plan);
      this.renderProgress(plan);
      this.renderRules(plan);
      this.renderItems(plan);
    }
    const pending = plan.pendingAction ? plan.pendingAction.since : null;
    if (this.changed('actions', [plan.status, plan.version, approval, pending])) this.renderActions(plan, approval);
    if (this.changed('timeline', this.logs.length)) this.renderProgress(plan);
    if (this.changed('instances', instances)) this.renderInstances(instances);
    if (this.changed('metrics', metrics)) this.renderCharts(metrics);
    if (this.changed('logs', this.logs.map((row) => row.id))) this.renderLogs(logs.error);
  }

  problem(error) {
    this.parts.problem.hidden = false;
    replace(this.parts.problem, errorText(error));
  }

  async fetchLogs() {
    const path = `${api.planPath(this.planId)}/logs`;
    const first = await api.get(path, { page: 1, pageSize: LOG_PAGE });
    let rows = first.items;
    if (first.total > LOG_PAGE) {
      // Oldest first: the newest rows are on the last page (and the one before it).
      const last = Math.ceil(first.total / LOG_PAGE);
      const before = last - 1 === 1 ? first : await api.get(path, { page: last - 1, pageSize: LOG_PAGE });
      const tail = await api.get(path, { page: last, pageSize: LOG_PAGE });
      rows = [...before.items, ...tail.items].slice(-LOG_PAGE);
    }
    return rows;
  }

  async fetchMetrics(plan) {
    // The server's clock, as far as the console knows it: its newest timestamp.
    const known = [plan.updatedAt, plan.progress.lastAnalysisAt, plan.finishedAt, ...this.logs.map((r) => r.at)]
      .filter(Boolean)
      .map((iso) => Date.parse(iso));
    const anchor = known.length ? Math.max(...known) : Date.now();
    const since = new Date(anchor - this.range * 1000).toISOString();
    const bucket = Math.max(10, Math.min(86400, Math.round(this.range / 120)));
    return api.get(`${api.planPath(this.planId)}/metrics`, { since, bucket });
  }

  approvalState(plan) {
    const needed = (this.context.settings.approvalEnvironments || []).includes(plan.environment);
    if (!needed || !['DRAFT', 'ACTIVE', 'PAUSED'].includes(plan.status)) return null;
    const stage = plan.status === 'DRAFT' ? 'start' : 'complete';
    // The rule of the roles plugin (plugins/auth/roles.py, latest_decision): a start needs this
    // version of the draft approved; a completion, a decision made since the plan started.
    const startedAt = plan.startedAt ? Date.parse(plan.startedAt) : null;
    const decisions = this.logs.filter(
      (row) =>
        (row.action === 'APPROVED' || row.action === 'REJECTED') &&
        row.details &&
        row.details.stage === stage &&
        (stage !== 'start' || row.details.version === plan.version) &&
        (stage !== 'complete' || startedAt === null || Date.parse(row.at) >= startedAt),
    );
    const last = decisions[decisions.length - 1] || null;
    return { stage, decision: last ? { action: last.action, actor: last.actor, at: last.at, reason: last.message } : null };
  }

  renderHead(plan) {
    replace(
      this.parts.head,
      h('div', { class: 'title-row' }, h('h1', { dataset: { testid: 'plan-name' } }, plan.planName), statusBadge(plan.status)),
      h(
        'dl',
        { class: 'facts' },
        fact(t('detail.id'), h('span', { class: 'mono' }, plan.planId)),
        fact(t('detail.where'), `${plan.appName} / ${plan.environment} / ${plan.groupName}`),
        fact(t('detail.strategy'), `${label('strategy', plan.grayStrategy)} · ${strategySummary(plan)}`),
        fact(t('detail.createdBy'), `${plan.createdBy} · ${fmtTime(plan.createdAt)}`),
        fact(t('detail.updatedBy'), `${plan.updatedBy} · ${fmtTime(plan.updatedAt)}`),
        plan.startedAt ? fact(t('detail.startedAt'), fmtTime(plan.startedAt)) : null,
        plan.finishedAt ? fact(t('detail.finishedAt'), fmtTime(plan.finishedAt)) : null,
        plan.startAt ? fact(t('detail.startAt'), fmtTime(plan.startAt)) : null,
        fact(t('detail.version'), String(plan.version)),
      ),
      plan.description ? h('p', { class: 'description' }, plan.description) : null,
      pendingNotice(plan.pendingAction),
      ...warningNotices(plan.warnings),
    );
  }

  allowed(action, plan) {
    const states = (this.context.settings.transitions || {})[action] || [];
    return states.includes(plan.status);
  }

  renderActions(plan, approval) {
    const canary = plan.grayStrategy === 'CANARY';
    const widenable = canary || plan.grayStrategy === 'PERCENTAGE';
    const buttons = [
      ['start', 'primary', () => this.act('start')],
      ['pause', '', () => this.act('pause')],
      ['resume', 'primary', () => this.act('resume')],
      canary ? ['promote', '', () => this.act('promote')] : null,
      widenable ? ['promoteFull', '', () => this.promoteFull(), 'promote'] : null,
      ['complete', 'primary', () => this.complete()],
      ['rollback', 'danger', () => this.rollback()],
      ['update', '', () => this.edit()],
      ['delete', 'danger-outline', () => this.remove()],
    ].filter(Boolean);
    replace(
      this.parts.actions,
      buttons.map(([name, cls, run, transition]) => {
        // While another action publishes, the server refuses every other one (409).
        const enabled = !plan.pendingAction && this.allowed(transition || name, plan);
        const why = plan.pendingAction
          ? t('detail.pendingBlocks')
          : t('detail.notAllowed', { status: label('status', plan.status) });
        return h(
          'button',
          {
            type: 'button',
            class: cls,
            disabled: !enabled,
            title: enabled ? '' : why,
            dataset: { action: name },
            onClick: () => this.run(run),
          },
          label('action', name),
        );
      }),
    );
    if (!approval) {
      replace(this.parts.approval);
      return;
    }
    const { decision } = approval;
    const stateText = decision
      ? t(decision.action === 'APPROVED' ? 'approval.approved' : 'approval.rejected', { actor: decision.actor, at: fmtTime(decision.at), reason: decision.reason || '' })
      : t('approval.waiting');
    replace(
      this.parts.approval,
      h('div', { class: ['approval-box', decision ? `approval-${decision.action.toLowerCase()}` : 'approval-waiting'], dataset: { testid: 'approval' } },
        h('strong', {}, t(`approval.stage.${approval.stage}`)),
        h('span', { class: 'approval-state' }, stateText),
        h('button', { type: 'button', class: 'primary', dataset: { action: 'approve' }, onClick: () => this.run(() => this.decide('approve')) }, label('action', 'approve')),
        h('button', { type: 'button', class: 'danger-outline', dataset: { action: 'reject' }, onClick: () => this.run(() => this.decide('reject')) }, label('action', 'reject')),
      ),
    );
  }

  async run(work) {
    if (this.busy) return;
    this.busy = true;
    this.parts.actions.querySelectorAll('button').forEach((b) => b.classList.add('busy'));
    try {
      await work();
    } catch (error) {
      toast(errorText(error), 'error');
    } finally {
      this.busy = false;
      this.parts.actions.querySelectorAll('button').forEach((b) => b.classList.remove('busy'));
      this.keys.actions = null;
      await this.refresh();
    }
  }

  async act(action, body) {
    const plan = await api.post(`${api.planPath(this.planId)}/${action}`, body, { ifMatch: this.plan.version });
    toast(t('detail.done', { action: label('action', action), status: label('status', plan.status) }), 'success');
    return plan;
  }

  async promoteFull() {
    const answer = await confirmDialog({ title: label('action', 'promoteFull'), message: t('confirm.promoteFull', { name: this.plan.planName }), confirm: label('action', 'promoteFull') });
    if (answer) await this.act('promote', { full: true });
  }

  async complete() {
    const answer = await confirmDialog({
      title: label('action', 'complete'),
      message: t('confirm.complete', { name: this.plan.planName, keys: this.plan.configKeys.join(', ') }),
      confirm: label('action', 'complete'),
    });
    if (answer) await this.act('complete');
  }

  async rollback(force = false) {
    const answer = await confirmDialog({
      title: label('action', 'rollback'),
      message: force ? t('confirm.drift') : t(this.plan.status === 'COMPLETED' ? 'confirm.rollbackCompleted' : 'confirm.rollback', { name: this.plan.planName }),
      confirm: label('action', 'rollback'),
      danger: true,
      reason: 'optional',
      force,
    });
    if (!answer) return;
    try {
      await this.act('rollback', { reason: answer.reason, force: answer.force });
    } catch (error) {
      if (error.code === 'CONFLICT' && error.details.driftedKeys && !force) {
        toast(errorText(error), 'error');
        await this.rollback(true);
        return;
      }
      throw error;
    }
  }

  async decide(kind) {
    const answer = await confirmDialog({
      title: label('action', kind),
      message: t(`confirm.${kind}`, { name: this.plan.planName }),
      confirm: label('action', kind),
      reason: kind === 'reject' ? 'required' : 'optional',
      danger: kind === 'reject',
    });
    if (!answer) return;
    await api.post(`${api.planPath(this.planId)}/${kind}`, answer.reason ? { reason: answer.reason } : {});
    toast(t(kind === 'approve' ? 'approval.doneApprove' : 'approval.doneReject'), 'success');
  }

  edit() {
    openPlanDialog(this.context, this.plan, () => {
      toast(t('detail.saved'), 'success');
      this.keys = {};
      this.refresh();
    });
  }

  async remove() {
    const answer = await confirmDialog({ title: label('action', 'delete'), message: t('confirm.delete', { name: this.plan.planName }), confirm: label('action', 'delete'), danger: true });
    if (!answer) return;
    await api.del(api.planPath(this.planId), { ifMatch: this.plan.version });
    toast(t('detail.deleted'), 'success');
    this.context.navigate('#/plans');
  }

  renderProgress(plan) {
    const progress = plan.progress;
    const facts = h(
      'dl',
      { class: 'facts' },
      plan.grayStrategy === 'CANARY' ? fact(t('detail.step'), String(progress.step)) : null,
      progress.nextStepAt && plan.status === 'ACTIVE' ? fact(t('detail.nextStep'), fmtTime(progress.nextStepAt)) : null,
      fact(t('detail.analyses'), t('detail.analysesText', { n: progress.analyses || 0, failed: progress.failedAnalyses || 0 })),
      progress.lastAnalysisAt ? fact(t('detail.lastAnalysis'), fmtTime(progress.lastAnalysisAt)) : null,
    );
    replace(this.parts.progress, h('div', { class: 'big-progress', dataset: { testid: 'progress' } }, progressBar(plan)), facts, plan.grayStrategy === 'CANARY' ? this.timeline(plan) : null);
  }

  timeline(plan) {
    const rules = (plan.grayRules && plan.grayRules.canary) || {};
    const stepSize = Number(rules.stepPercentage) || 0;
    const top = Number(rules.maxPercentage) || 100;
    // The engine's StepSchedule.percentage_after (grayrelease_core/strategy.py): linear adds
    // the step, exponential doubles it, both capped at the top.
    const planned = [];
    if (stepSize > 0) {
      let value = 0;
      let size = stepSize;
      for (let i = 0; i < 60 && value < top; i += 1) {
        value = Math.min(top, rules.growth === 'exponential' ? (i === 0 ? stepSize : value + size) : value + stepSize);
        if (rules.growth === 'exponential' && i > 0) size *= 2;
        planned.push(Number(value.toFixed(2)));
      }
    }
    const reached = {};
    for (const row of this.logs) {
      if ((row.action === 'STEPPED' || row.action === 'PROMOTED') && row.after && row.after.progress) {
        const value = Number(row.after.progress.percentage);
        if (!(value in reached)) reached[value] = row;
      }
    }
    const current = Number(plan.progress.percentage) || 0;
    const started = this.logs.find((row) => row.action === 'STARTED');
    const stops = [
      h('li', { class: ['stop', plan.startedAt ? 'reached' : ''] }, h('span', { class: 'stop-value' }, t('timeline.canaries', { n: (rules.canaryInstances || []).length })), h('span', { class: 'stop-time muted small' }, started ? fmtTime(started.at) : t('timeline.notYet'))),
      ...planned.map((value) => {
        const row = reached[value];
        const done = plan.status !== 'DRAFT' && current >= value;
        return h(
          'li',
          { class: ['stop', done ? 'reached' : '', done && current === value ? 'current' : ''], dataset: { percentage: String(value) } },
          h('span', { class: 'stop-value' }, `${fmtNumber(value)}%`),
          h('span', { class: 'stop-time muted small' }, row ? `${fmtTime(row.at)} · ${row.actor}` : done ? '' : t('timeline.notYet')),
        );
      }),
    ];
    return h('div', { class: 'timeline-wrap' }, h('h3', {}, t('timeline.title')), h('ol', { class: 'timeline', dataset: { testid: 'timeline' } }, stops));
  }

  renderItems(plan) {
    // A DRAFT has no snapshot yet: its gray values are compared with the backend's values now.
    const draft = plan.status === 'DRAFT';
    const cells = {};
    const rows = plan.items.map((item) => {
      const cell = h('div', { class: 'item-diff' }, diffView(draft ? null : item.originalPresent ? item.originalValue : null, item.grayValue, draft ? t('detail.current') : undefined));
      cells[item.configKey] = cell;
      return h('div', { class: 'item', dataset: { key: item.configKey } }, h('div', { class: 'item-head' }, h('code', {}, item.configKey), itemBadge(item.status)), cell);
    });
    replace(this.parts.items, rows);
    if (!draft) return;
    const where = { appName: plan.appName, environment: plan.environment, groupName: plan.groupName };
    api
      .get('/config/current', { ...where, configKey: plan.configKeys }, { quiet: true })
      .then((answer) => {
        const gray = Object.fromEntries(plan.items.map((item) => [item.configKey, item.grayValue]));
        for (const { configKey, value } of answer.items) {
          if (cells[configKey]) replace(cells[configKey], diffView(value, gray[configKey], t('detail.current')));
        }
      })
      .catch(() => {}); // the diff against "(not set)" stays; the plan itself loaded
  }

  renderRules(plan) {
    const rules = plan.grayRules || {};
    const list = (items) => h('ul', { class: 'chips' }, (items || []).map((x) => h('li', { class: 'chip mono' }, x)));
    let body;
    if (plan.grayStrategy === 'IP_WHITELIST') body = list(rules.ipWhitelist);
    else if (plan.grayStrategy === 'USER_WHITELIST') body = list(rules.userWhitelist);
    else if (plan.grayStrategy === 'LABEL') body = list(Object.entries(rules.labels || {}).map(([k, v]) => `${k} = ${v.join(' | ')}`));
    else if (plan.grayStrategy === 'PERCENTAGE') body = h('p', {}, t('rules.percentage', { pct: rules.percentage, by: label('stickiness', rules.stickiness || 'instanceId') }));
    else if (plan.grayStrategy === 'CANARY') {
      const c = rules.canary || {};
      body = h(
        'div',
        {},
        list(c.canaryInstances),
        h('p', {}, t('rules.canary', { step: c.stepPercentage, interval: c.stepInterval, max: c.maxPercentage ?? 100, growth: t(`dialog.${c.growth || 'linear'}`) })),
        c.autoComplete ? h('p', {}, t('rules.autoComplete', { bake: c.bakeTime ?? 0 })) : null,
      );
    } else body = h('pre', { class: 'mono' }, JSON.stringify(rules, null, 2));
    const checks = plan.autoRollback && plan.autoRollback.checks && plan.autoRollback.checks.length
      ? h(
          'table',
          { class: 'compact' },
          h('thead', {}, h('tr', {}, [t('dialog.metric'), t('dialog.limit'), t('dialog.direction'), t('dialog.critical')].map((x) => h('th', {}, x)))),
          h('tbody', {}, plan.autoRollback.checks.map((c) => h('tr', {}, h('td', { class: 'mono' }, c.metric), h('td', {}, c.threshold !== undefined && c.threshold !== null ? `≤ ${c.threshold}` : `+${fmtNumber((c.maxIncrease || 0) * 100)}%`), h('td', {}, t(`dialog.${c.direction || 'increase'}`)), h('td', {}, c.critical ? '✓' : '')))),
        )
      : h('p', { class: 'muted' }, t('rules.noChecks'));
    const notify = plan.notify
      ? h('p', {}, t('rules.notify', { channels: (plan.notify.channels || []).map((c) => label('channel', c)).join(', ') || '—', events: (plan.notify.events || []).length }))
      : h('p', { class: 'muted' }, t('rules.defaultNotify'));
    replace(this.parts.rules, h('h3', {}, label('strategy', plan.grayStrategy)), body, h('h3', {}, t('dialog.autoRollback')), checks, h('h3', {}, t('dialog.notify')), notify);
  }

  renderCharts(metrics) {
    if (metrics.error) {
      replace(this.parts.charts, h('p', { class: 'muted' }, errorText(metrics.error)));
      return;
    }
    if (!metrics.series.length) {
      replace(this.parts.charts, h('p', { class: 'muted' }, t('chart.empty')), this.verdictList(metrics));
      return;
    }
    replace(
      this.parts.charts,
      metrics.series.map((series) => h('figure', { class: 'chart-box' }, h('figcaption', {}, series.metric), metricChart(series, metrics))),
      this.verdictList(metrics),
      metrics.truncated ? h('p', { class: 'muted small' }, t('chart.truncated')) : null,
    );
  }

  verdictList(metrics) {
    if (!metrics.verdicts.length) return null;
    return h(
      'ul',
      { class: 'verdicts' },
      metrics.verdicts.slice(-8).reverse().map((v) => h('li', { class: `verdict-${String(v.outcome).toLowerCase()}` }, h('strong', {}, label('outcome', v.outcome)), ` ${label('log', v.action)} · ${fmtTime(v.at)}`)),
    );
  }

  renderInstances(page) {
    if (page.error) {
      replace(this.parts.instances, h('p', { class: 'muted' }, errorText(page.error)));
      return;
    }
    const head = h('thead', {}, h('tr', {}, [t('instances.id'), t('instances.ip'), t('instances.first'), t('instances.last'), t('instances.hits')].map((x) => h('th', {}, x))));
    const body = h(
      'tbody',
      {},
      page.items.length
        ? page.items.map((i) => h('tr', {}, h('td', { class: 'mono' }, i.instanceId), h('td', { class: 'mono' }, i.instanceIp), h('td', {}, fmtTime(i.firstSeen)), h('td', {}, fmtTime(i.lastSeen)), h('td', { class: 'num' }, String(i.hits))))
        : emptyRow(5, t('instances.empty')),
    );
    replace(
      this.parts.instances,
      h('table', { class: 'compact', dataset: { testid: 'instances' } }, head, body),
      page.total > INSTANCE_PAGE
        ? pager(page.page, page.pageSize, page.total, (next) => {
            this.instancePage = next;
            this.refresh();
          })
        : null,
    );
  }

  renderLogs(error) {
    if (error) {
      replace(this.parts.logs, h('p', { class: 'muted' }, errorText(error)));
      return;
    }
    const fresh = this.seenLogs;
    this.seenLogs = new Set(this.logs.map((row) => row.id));
    const rows = [...this.logs].reverse().map((row) =>
      h(
        'tr',
        { class: fresh && !fresh.has(row.id) ? 'new' : '', dataset: { action: row.action } },
        h('td', { class: 'nowrap' }, fmtTime(row.at)),
        h('td', {}, h('span', { class: ['log-action', `log-${String(row.action).toLowerCase()}`] }, label('log', row.action))),
        h('td', {}, row.actor),
        h('td', { class: 'nowrap' }, row.statusBefore || row.statusAfter ? `${row.statusBefore ? label('status', row.statusBefore) : '∅'} → ${row.statusAfter ? label('status', row.statusAfter) : '∅'}` : ''),
        h('td', {}, row.message || detailText(row)),
      ),
    );
    replace(
      this.parts.logs,
      h(
        'table',
        { class: 'compact log-table', dataset: { testid: 'log' } },
        h('thead', {}, h('tr', {}, [t('log.at'), t('log.action'), t('log.actor'), t('log.status'), t('log.message')].map((x) => h('th', {}, x)))),
        h('tbody', {}, rows.length ? rows : emptyRow(5, t('log.empty'))),
      ),
    );
  }

  destroy() {}
}

function fact(name, value) {
  return h('div', { class: 'fact' }, h('dt', {}, name), h('dd', {}, value));
}

function detailText(row) {
  const details = row.details || {};
  if (STEP_ACTIONS.has(row.action) && row.after && row.after.progress && (row.action === 'STEPPED' || row.action === 'PROMOTED')) {
    return `${fmtNumber(row.after.progress.percentage)}%`;
  }
  if (details.checks) {
    return details.checks.map((c) => `${c.metric}: ${label('outcome', c.outcome)}`).join(', ');
  }
  if (details.action) return label('action', details.action);
  return '';
}

// A completion or rollback under way (or finished by recovery after its process stopped).
/** What the plan's checks can never decide (the API's ``warnings``), in the console's language. */
function warningNotices(warnings) {
  return (warnings || []).map((warning) =>
    h('p', { class: 'banner banner-warning', role: 'note', dataset: { testid: `warning-${warning.code}` } },
      t(`warning.${warning.code}`, warning.params)),
  );
}

function pendingNotice(pending) {
  if (!pending) return null;
  const text = t(pending.direction === 'BACK' ? 'detail.pendingBack' : 'detail.pending', {
    action: label('action', pending.action),
    actor: pending.actor,
    since: fmtTime(pending.since),
  });
  return h('p', { class: 'banner banner-warning', role: 'status', dataset: { testid: 'pending-action' } }, text);
}
