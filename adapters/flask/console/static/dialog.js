// The create / edit dialog: a form per strategy, the config keys with their current and gray
// values side by side, auto-rollback checks and notification routing. Validation is the API's:
// a 400 names a field (details.field) and its message is shown next to that field.
import * as api from './api.js';
import { h, lines, replace } from './dom.js';
import { label, t } from './i18n.js';
import { errorText } from './ui.js';

const METRICS = ['errorRate', 'responseTimeP99', 'cpuUsage', 'memoryUsage'];
const STICKINESS = ['instanceId', 'instanceIp', 'userId'];
const SEVERITIES = ['info', 'warning', 'critical'];
const MAX_KEY = 256; // longer keys are refused by the API: not worth asking about

let uid = 0;
const nextId = (base) => `${base}-${++uid}`;

function field(name, text, control, hint) {
  const id = control.id || nextId('f');
  control.id = id;
  return h(
    'div',
    { class: 'field', dataset: { field: name } },
    h('label', { for: id, class: 'field-label' }, text),
    control,
    hint ? h('small', { class: 'hint' }, hint) : null,
  );
}

function numberValue(input) {
  const raw = input.value.trim();
  if (raw === '') return undefined;
  const value = Number(raw);
  return Number.isFinite(value) ? value : raw; // the API names a field that is not a number
}

function textInput(name, value, attrs = {}) {
  return h('input', { type: 'text', name, value: value ?? '', autocomplete: 'off', ...attrs });
}

function select(name, options, value) {
  return h(
    'select',
    { name },
    options.map(([v, text]) => h('option', { value: v, selected: v === value }, text)),
  );
}

function section(title, ...children) {
  return h('fieldset', { class: 'section' }, h('legend', {}, title), ...children);
}

export function openPlanDialog(context, plan, onSaved, onClosed) {
  const { settings } = context;
  const editing = Boolean(plan);
  const rules = (plan && plan.grayRules) || {};
  const strategies = settings.strategies && settings.strategies.length ? settings.strategies : ['IP_WHITELIST', 'USER_WHITELIST', 'PERCENTAGE', 'CANARY', 'LABEL'];

  // --- basics --------------------------------------------------------------------------------
  const planName = textInput('planName', plan && plan.planName, { maxlength: 128 });
  const appName = textInput('appName', plan && plan.appName, { maxlength: 128 });
  const environment = textInput('environment', plan ? plan.environment : 'prod', { maxlength: 128 });
  const groupName = textInput('groupName', plan ? plan.groupName : settings.defaultGroup || 'default', { maxlength: 128 });
  const description = h('textarea', { name: 'description', rows: 2, value: (plan && plan.description) || '' });
  const startAt = h('input', { type: 'datetime-local', name: 'startAt', value: plan && plan.startAt ? localInput(plan.startAt) : '' });

  // --- strategy ------------------------------------------------------------------------------
  const strategy = select(
    'grayStrategy',
    strategies.map((name) => [name, label('strategy', name)]),
    plan ? plan.grayStrategy : strategies.includes('IP_WHITELIST') ? 'IP_WHITELIST' : strategies[0],
  );
  const panels = {};
  const collectors = {};

  const ipList = h('textarea', { name: 'ipWhitelist', rows: 4, placeholder: '192.168.1.100\n10.0.0.0/24', value: (rules.ipWhitelist || []).join('\n') });
  panels.IP_WHITELIST = h('div', { class: 'strategy-panel' }, field('grayRules.ipWhitelist', t('dialog.ipWhitelist'), ipList, t('dialog.ipHint')));
  collectors.IP_WHITELIST = () => ({ ipWhitelist: lines(ipList.value) });

  const userList = h('textarea', { name: 'userWhitelist', rows: 4, placeholder: 'u-1001\nalice', value: (rules.userWhitelist || []).join('\n') });
  panels.USER_WHITELIST = h('div', { class: 'strategy-panel' }, field('grayRules.userWhitelist', t('dialog.userWhitelist'), userList, t('dialog.listHint')));
  collectors.USER_WHITELIST = () => ({ userWhitelist: lines(userList.value) });

  const pct = rules.percentage !== undefined ? rules.percentage : 10;
  const slider = h('input', { type: 'range', name: 'percentageSlider', min: 0, max: 100, step: 0.5, value: String(pct), 'aria-label': t('dialog.percentage') });
  const pctNumber = h('input', { type: 'number', name: 'percentage', min: 0, max: 100, step: 0.01, value: String(pct), class: 'narrow' });
  slider.addEventListener('input', () => {
    pctNumber.value = slider.value;
  });
  pctNumber.addEventListener('input', () => {
    slider.value = pctNumber.value;
  });
  const pctStickiness = select('stickiness', STICKINESS.map((s) => [s, label('stickiness', s)]), rules.stickiness || 'instanceId');
  panels.PERCENTAGE = h(
    'div',
    { class: 'strategy-panel' },
    h('div', { class: 'field', dataset: { field: 'grayRules.percentage' } }, h('label', { class: 'field-label', for: (pctNumber.id = nextId('pct')) }, t('dialog.percentage')), h('div', { class: 'slider' }, slider, pctNumber, h('span', {}, '%'))),
    field('grayRules.stickiness', t('dialog.stickiness'), pctStickiness, t('dialog.stickinessHint')),
  );
  collectors.PERCENTAGE = () => ({ percentage: numberValue(pctNumber), stickiness: pctStickiness.value });

  const canary = rules.canary || {};
  const canaryInstances = h('textarea', { name: 'canaryInstances', rows: 3, placeholder: '192.168.1.200\norder-7f9c-abcde', value: (canary.canaryInstances || []).join('\n') });
  const stepPercentage = h('input', { type: 'number', name: 'stepPercentage', min: 0, max: 100, step: 0.01, value: canary.stepPercentage ?? 20, class: 'narrow' });
  const stepInterval = h('input', { type: 'number', name: 'stepInterval', min: 1, step: 1, value: canary.stepInterval ?? 30, class: 'narrow' });
  const maxPercentage = h('input', { type: 'number', name: 'maxPercentage', min: 0, max: 100, step: 0.01, value: canary.maxPercentage ?? 100, class: 'narrow' });
  const growth = select('growth', [['linear', t('dialog.linear')], ['exponential', t('dialog.exponential')]], canary.growth || 'linear');
  const autoComplete = h('input', { type: 'checkbox', name: 'autoComplete', checked: Boolean(canary.autoComplete) });
  const bakeTime = h('input', { type: 'number', name: 'bakeTime', min: 0, step: 1, value: canary.bakeTime ?? 0, class: 'narrow' });
  const canaryStickiness = select('canaryStickiness', STICKINESS.map((s) => [s, label('stickiness', s)]), canary.stickiness || 'instanceId');
  panels.CANARY = h(
    'div',
    { class: 'strategy-panel' },
    field('grayRules.canary.canaryInstances', t('dialog.canaryInstances'), canaryInstances, t('dialog.canaryHint')),
    h(
      'div',
      { class: 'row' },
      field('grayRules.canary.stepPercentage', t('dialog.stepPercentage'), stepPercentage),
      field('grayRules.canary.stepInterval', t('dialog.stepInterval'), stepInterval),
      field('grayRules.canary.maxPercentage', t('dialog.maxPercentage'), maxPercentage),
      field('grayRules.canary.growth', t('dialog.growth'), growth),
    ),
    h(
      'div',
      { class: 'row' },
      h('div', { class: 'field', dataset: { field: 'grayRules.canary.autoComplete' } }, h('label', { class: 'check' }, autoComplete, ' ', t('dialog.autoComplete'))),
      field('grayRules.canary.bakeTime', t('dialog.bakeTime'), bakeTime),
      field('grayRules.canary.stickiness', t('dialog.stickiness'), canaryStickiness),
    ),
  );
  collectors.CANARY = () => ({
    canary: {
      canaryInstances: lines(canaryInstances.value),
      stepPercentage: numberValue(stepPercentage),
      stepInterval: numberValue(stepInterval),
      maxPercentage: numberValue(maxPercentage),
      growth: growth.value,
      autoComplete: autoComplete.checked,
      bakeTime: numberValue(bakeTime),
      stickiness: canaryStickiness.value,
    },
  });

  const labelRows = h('div', { class: 'label-rows' });
  const addLabel = (name = '', values = []) => {
    const nameInput = textInput('labelName', name, { placeholder: 'zone', 'aria-label': t('dialog.labelName') });
    const valuesInput = textInput('labelValues', values.join(', '), { placeholder: 'hz-a, hz-b', 'aria-label': t('dialog.labelValues') });
    const row = h('div', { class: 'label-row field', dataset: { field: '' } }, nameInput, h('span', {}, '='), valuesInput, h('button', { type: 'button', class: 'link', onClick: () => row.remove() }, t('common.remove')));
    row.nameInput = nameInput;
    row.valuesInput = valuesInput;
    labelRows.appendChild(row);
  };
  Object.entries(rules.labels || {}).forEach(([name, values]) => addLabel(name, values));
  if (!labelRows.children.length) addLabel();
  panels.LABEL = h(
    'div',
    { class: 'strategy-panel' },
    h('div', { class: 'field', dataset: { field: 'grayRules.labels' } }, h('span', { class: 'field-label' }, t('dialog.labels')), labelRows, h('small', { class: 'hint' }, t('dialog.labelHint'))),
    h('button', { type: 'button', class: 'link', dataset: { action: 'add-label' }, onClick: () => addLabel() }, t('dialog.addLabel')),
  );
  collectors.LABEL = () => {
    const labels = {};
    for (const row of labelRows.children) {
      const name = row.nameInput.value.trim();
      row.dataset.field = name ? `grayRules.labels.${name}` : '';
      if (name) labels[name] = lines(row.valuesInput.value);
    }
    return { labels };
  };

  for (const name of strategies) {
    if (panels[name]) continue; // a plugin's strategy: its rules as JSON
    const raw = h('textarea', { name: `rules-${name}`, rows: 4, class: 'mono', value: plan && plan.grayStrategy === name ? JSON.stringify(rules, null, 2) : '{}' });
    panels[name] = h('div', { class: 'strategy-panel' }, field('grayRules', t('dialog.rulesJson'), raw));
    collectors[name] = () => {
      try {
        return JSON.parse(raw.value || '{}');
      } catch {
        return raw.value;
      }
    };
  }
  const showPanel = () => {
    for (const [name, panel] of Object.entries(panels)) panel.hidden = name !== strategy.value;
  };
  strategy.addEventListener('change', showPanel);
  showPanel();

  // --- config keys ---------------------------------------------------------------------------
  // The current values come from GET /config/current: the backend's value, never a gray one,
  // and reading it records no instance in the plan that holds the key.
  const keyRows = h('div', { class: 'key-rows' });
  let lookUps = 0;
  const showCurrent = (row, text, kind) => {
    row.current.className = ['current-value', 'mono', kind].filter(Boolean).join(' ');
    row.current.title = '';
    replace(row.current, text);
  };
  const lookUpAll = async () => {
    const mine = ++lookUps;
    const rows = Array.from(keyRows.children);
    const where = { appName: appName.value.trim(), environment: environment.value.trim(), groupName: groupName.value.trim() };
    const keyOf = (row) => row.keyInput.value.trim();
    const asked = rows.filter((row) => keyOf(row) && keyOf(row).length <= MAX_KEY && where.appName && where.environment);
    for (const row of rows) {
      const wanted = asked.includes(row) ? JSON.stringify([where, keyOf(row)]) : null;
      if (wanted === row.shown) continue;
      row.shown = wanted;
      showCurrent(row, wanted ? '…' : '—', 'muted'); // what it showed was for another key
    }
    if (!asked.length) return;
    let answer;
    try {
      answer = await api.get('/config/current', { ...where, configKey: [...new Set(asked.map(keyOf))] }, { quiet: true });
    } catch (error) {
      if (mine !== lookUps) return;
      asked.forEach((row) => {
        showCurrent(row, t('dialog.unavailable'), 'muted');
        row.current.title = errorText(error);
      });
      return;
    }
    if (mine !== lookUps) return; // a newer look-up is on its way
    const found = Object.fromEntries(answer.items.map((item) => [item.configKey, item]));
    for (const row of asked) {
      const item = found[keyOf(row)];
      if (!item) continue;
      const value = item.value === null ? t('dialog.notSet') : item.value;
      if (item.planId && (!plan || item.planId !== plan.planId)) {
        showCurrent(row, `${value}\n${t('dialog.held', { id: item.planId })}`, 'warning');
      } else {
        showCurrent(row, value, item.value === null ? 'muted' : '');
      }
    }
  };
  const addKey = (key = '', grayValue = '') => {
    const keyInput = textInput('configKey', key, { placeholder: 'feature.newPayment.enabled', 'aria-label': t('dialog.configKey'), class: 'mono' });
    const current = h('pre', { class: ['current-value', 'mono', key ? '' : 'muted'], dataset: { testid: 'current-value' } }, key ? '…' : '—');
    const gray = h('textarea', { name: 'grayValue', rows: 2, class: 'mono', value: grayValue, 'aria-label': t('dialog.grayValue') });
    const keyField = h('div', { class: 'field key-field', dataset: { field: '' } }, keyInput);
    const grayField = h('div', { class: 'field gray-field', dataset: { field: '' } }, gray);
    const row = h(
      'div',
      { class: 'key-row' },
      keyField,
      h('div', { class: 'current-cell' }, current),
      grayField,
      h('button', { type: 'button', class: 'link', 'aria-label': t('common.remove'), onClick: () => row.remove() }, '✕'),
    );
    Object.assign(row, { keyInput, gray, keyField, grayField, current });
    keyInput.addEventListener('change', lookUpAll);
    keyRows.appendChild(row);
    return row;
  };
  if (plan) {
    plan.configKeys.forEach((key) => addKey(key, (plan.grayValues || {})[key] ?? ''));
  } else {
    addKey();
  }
  lookUpAll();
  for (const input of [appName, environment, groupName]) input.addEventListener('change', lookUpAll);

  // --- auto-rollback -------------------------------------------------------------------------
  const auto = (plan && plan.autoRollback) || null;
  const autoOn = h('input', { type: 'checkbox', name: 'autoRollbackOn', checked: Boolean(auto) });
  const checkRows = h('div', { class: 'check-rows', dataset: { field: 'autoRollback.checks' } });
  const failureThreshold = h('input', { type: 'number', name: 'failureThreshold', min: 1, step: 1, class: 'narrow', value: auto && auto.failureThreshold !== undefined ? auto.failureThreshold : '' });
  const interval = h('input', { type: 'number', name: 'interval', min: 1, step: 1, class: 'narrow', value: auto && auto.interval !== undefined ? auto.interval : '' });
  const metricList = h('datalist', { id: nextId('metrics') }, METRICS.map((m) => h('option', { value: m })));
  const addCheck = (check = { metric: 'errorRate', maxIncrease: 0.2 }) => {
    const metric = textInput('metric', check.metric, { list: metricList.id, 'aria-label': t('dialog.metric'), class: 'mono' });
    const kind = select('kind', [['maxIncrease', t('dialog.relative')], ['threshold', t('dialog.absolute')]], check.threshold !== undefined && check.threshold !== null ? 'threshold' : 'maxIncrease');
    const limit = h('input', { type: 'number', name: 'limit', step: 'any', class: 'narrow', 'aria-label': t('dialog.limit'), value: check.threshold ?? check.maxIncrease ?? '' });
    const direction = select('direction', [['increase', t('dialog.increase')], ['decrease', t('dialog.decrease')]], check.direction || 'increase');
    const minSamples = h('input', { type: 'number', name: 'minSamples', min: 1, step: 1, class: 'narrow', 'aria-label': t('dialog.minSamples'), placeholder: t('dialog.minSamples'), value: check.minSamples ?? '' });
    const critical = h('input', { type: 'checkbox', name: 'critical', checked: Boolean(check.critical) });
    const parts = {
      metric: h('div', { class: 'field' }, metric),
      kind: h('div', { class: 'field' }, kind, limit),
      direction: h('div', { class: 'field' }, direction),
      minSamples: h('div', { class: 'field' }, minSamples),
    };
    const row = h('div', { class: 'check-row' }, parts.metric, parts.kind, parts.direction, parts.minSamples, h('label', { class: 'check' }, critical, ' ', t('dialog.critical')), h('button', { type: 'button', class: 'link', onClick: () => row.remove() }, t('common.remove')));
    row.collect = (index) => {
      const base = `autoRollback.checks[${index}]`;
      row.dataset.field = base;
      parts.metric.dataset.field = `${base}.metric`;
      parts.kind.dataset.field = `${base}.${kind.value}`;
      parts.direction.dataset.field = `${base}.direction`;
      parts.minSamples.dataset.field = `${base}.minSamples`;
      const out = { metric: metric.value.trim(), [kind.value]: numberValue(limit), direction: direction.value };
      const samples = numberValue(minSamples);
      if (samples !== undefined) out.minSamples = samples;
      if (critical.checked) out.critical = true;
      return out;
    };
    checkRows.appendChild(row);
  };
  ((auto && auto.checks) || []).forEach((check) => addCheck(check));
  if (!checkRows.children.length) addCheck();
  const autoBody = h(
    'div',
    { class: 'auto-body' },
    checkRows,
    metricList,
    h('button', { type: 'button', class: 'link', dataset: { action: 'add-check' }, onClick: () => addCheck({ metric: '', maxIncrease: '' }) }, t('dialog.addCheck')),
    h('div', { class: 'row' }, field('autoRollback.failureThreshold', t('dialog.failureThreshold'), failureThreshold), field('autoRollback.interval', t('dialog.interval'), interval)),
  );
  const showAuto = () => {
    autoBody.hidden = !autoOn.checked;
  };
  autoOn.addEventListener('change', showAuto);
  showAuto();

  // --- notifications -------------------------------------------------------------------------
  const routing = (plan && plan.notify) || null;
  const notifyOn = h('input', { type: 'checkbox', name: 'notifyOn', checked: Boolean(routing) });
  const channelBoxes = {};
  const recipientInputs = {};
  const severitySelects = {};
  const channels = settings.channels && settings.channels.length ? settings.channels : ['inbox'];
  const channelRows = channels.map((name) => {
    channelBoxes[name] = h('input', { type: 'checkbox', name: `channel-${name}`, checked: routing ? (routing.channels || []).includes(name) : name === 'inbox' });
    recipientInputs[name] = textInput(`recipients-${name}`, ((routing && routing.recipients && routing.recipients[name]) || []).join(', '), { placeholder: t(name === 'inbox' ? 'dialog.inboxRecipients' : 'dialog.recipients'), 'aria-label': t('dialog.recipients') });
    // Only events of this severity or worse reach the channel: an on-call SMS takes critical ones.
    severitySelects[name] = select(
      `minSeverity-${name}`,
      SEVERITIES.map((level) => [level, t('dialog.minSeverity', { level: label('severity', level) })]),
      (routing && routing.minSeverity && routing.minSeverity[name]) || 'info',
    );
    severitySelects[name].setAttribute('aria-label', t('dialog.minSeverityLabel'));
    return h(
      'div',
      { class: 'channel-row', dataset: { field: `notify.channels.${name}` } },
      h('label', { class: 'check' }, channelBoxes[name], ' ', label('channel', name)),
      h('div', { class: 'field', dataset: { field: `notify.recipients.${name}` } }, recipientInputs[name]),
      h('div', { class: 'field', dataset: { field: `notify.minSeverity.${name}` } }, severitySelects[name]),
    );
  });
  const chosenEvents = new Set(routing && routing.events ? routing.events : settings.defaultEvents || []);
  const eventBoxes = (settings.events || []).map((name) => {
    const box = h('input', { type: 'checkbox', name: 'event', value: name, checked: chosenEvents.has(name) });
    return h('label', { class: 'check event' }, box, ' ', label('log', name));
  });
  const notifyBody = h(
    'div',
    { class: 'notify-body' },
    h('div', { class: 'field', dataset: { field: 'notify.channels' } }, h('span', { class: 'field-label' }, t('dialog.channels')), channelRows),
    h('div', { class: 'field', dataset: { field: 'notify.events' } }, h('span', { class: 'field-label' }, t('dialog.events')), h('div', { class: 'events' }, eventBoxes)),
  );
  const showNotify = () => {
    notifyBody.hidden = !notifyOn.checked;
  };
  notifyOn.addEventListener('change', showNotify);
  showNotify();

  // --- the form ------------------------------------------------------------------------------
  const problem = h('p', { class: 'banner banner-error form-error', role: 'alert', hidden: true });
  const save = h('button', { type: 'submit', class: 'primary', dataset: { action: 'save' } }, editing ? t('dialog.save') : t('dialog.create'));
  const dialog = h('dialog', { class: 'plan-dialog', 'aria-labelledby': 'plan-dialog-title' });
  const close = () => {
    dialog.close();
    dialog.remove();
    if (onClosed) onClosed();
  };
  const form = h(
    'form',
    { novalidate: true, onSubmit: (event) => submit(event) },
    h('div', { class: 'dialog-head' }, h('h2', { id: 'plan-dialog-title' }, editing ? t('dialog.editTitle', { name: plan.planName }) : t('dialog.createTitle')), h('button', { type: 'button', class: 'link', 'aria-label': t('common.close'), onClick: close }, '✕')),
    h(
      'div',
      { class: 'dialog-body' },
      section(
        t('dialog.basics'),
        field('planName', t('dialog.planName'), planName),
        h('div', { class: 'row' }, field('appName', t('dialog.appName'), appName), field('environment', t('dialog.environment'), environment), field('groupName', t('dialog.groupName'), groupName)),
        field('description', t('dialog.description'), description),
        field('startAt', t('dialog.startAt'), startAt, t('dialog.startAtHint')),
      ),
      section(t('dialog.strategy'), field('grayStrategy', t('dialog.strategy'), strategy), h('div', { class: 'panels', dataset: { field: 'grayRules' } }, Object.values(panels))),
      section(
        t('dialog.keys'),
        h('div', { class: 'key-head' }, h('span', {}, t('dialog.configKey')), h('span', {}, t('dialog.currentValue')), h('span', {}, t('dialog.grayValue')), h('span', {})),
        h('div', { class: 'field', dataset: { field: 'configKeys' } }, keyRows),
        h('div', { class: 'field', dataset: { field: 'grayValues' } }, h('button', { type: 'button', class: 'link', dataset: { action: 'add-key' }, onClick: () => addKey() }, t('dialog.addKey'))),
      ),
      section(t('dialog.autoRollback'), h('div', { class: 'field', dataset: { field: 'autoRollback' } }, h('label', { class: 'check' }, autoOn, ' ', t('dialog.autoRollbackOn'))), autoBody),
      section(t('dialog.notify'), h('div', { class: 'field', dataset: { field: 'notify' } }, h('label', { class: 'check' }, notifyOn, ' ', t('dialog.notifyOn'))), notifyBody),
    ),
    h('div', { class: 'dialog-foot' }, problem, h('div', { class: 'dialog-buttons' }, h('button', { type: 'button', onClick: close }, t('common.cancel')), save)),
  );
  dialog.appendChild(form);
  dialog.addEventListener('cancel', (event) => {
    event.preventDefault();
    close();
  });

  function collect() {
    const keys = [];
    const grayValues = {};
    Array.from(keyRows.children).forEach((row, index) => {
      const key = row.keyInput.value.trim();
      row.keyField.dataset.field = `configKeys[${index}]`;
      row.grayField.dataset.field = key ? `grayValues.${key}` : '';
      if (!key && !row.gray.value) return;
      keys.push(key);
      if (row.gray.value !== '') grayValues[key] = row.gray.value;
    });
    const body = {
      planName: planName.value.trim(),
      appName: appName.value.trim(),
      environment: environment.value.trim(),
      groupName: groupName.value.trim() || undefined,
      description: description.value,
      configKeys: keys,
      grayStrategy: strategy.value,
      grayRules: collectors[strategy.value](),
      grayValues,
    };
    if (autoOn.checked) {
      const auto = { checks: Array.from(checkRows.children).map((row, index) => row.collect(index)) };
      const threshold = numberValue(failureThreshold);
      const every = numberValue(interval);
      if (threshold !== undefined) auto.failureThreshold = threshold;
      if (every !== undefined) auto.interval = every;
      body.autoRollback = auto;
    } else if (editing) {
      body.autoRollback = null;
    }
    if (notifyOn.checked) {
      const notify = { channels: channels.filter((name) => channelBoxes[name].checked), recipients: {} };
      const severities = {};
      for (const name of notify.channels) {
        const who = lines(recipientInputs[name].value);
        if (who.length) notify.recipients[name] = who;
        if (severitySelects[name].value !== 'info') severities[name] = severitySelects[name].value;
      }
      if (Object.keys(severities).length) notify.minSeverity = severities;
      notify.events = Array.from(notifyBody.querySelectorAll('input[name="event"]:checked')).map((box) => box.value);
      body.notify = notify;
    } else if (editing) {
      body.notify = null;
    }
    if (startAt.value) {
      const when = new Date(startAt.value);
      body.startAt = Number.isNaN(when.getTime()) ? startAt.value : when.toISOString();
    } else if (editing) {
      body.startAt = null;
    }
    return body;
  }

  function clearErrors() {
    form.querySelectorAll('.field-error[data-error-for]').forEach((el) => el.remove());
    form.querySelectorAll('.invalid').forEach((el) => el.classList.remove('invalid'));
    problem.hidden = true;
  }

  function place(error) {
    const name = error.field;
    let target = null;
    let probe = name;
    while (probe && !target) {
      target = Array.from(form.querySelectorAll('[data-field]')).find((el) => el.dataset.field === probe && !el.closest('[hidden]'));
      const shorter = probe.replace(/(\[\d+\]|\.[^.[\]]+)$/, '');
      if (shorter === probe) break;
      probe = shorter;
    }
    const { problem: said, value } = error.details;
    const named = value !== undefined && /\[\d+\]$/.test(name || '') && !String(said).includes(String(value));
    const text = said ? `${said}${named ? ` (${JSON.stringify(value)})` : ''}` : error.message;
    if (!target || name === 'body') {
      problem.hidden = false;
      replace(problem, errorText(error));
      return;
    }
    target.classList.add('invalid');
    const note = h('p', { class: 'field-error', role: 'alert', dataset: { errorFor: name } }, text);
    target.appendChild(note);
    const control = target.querySelector('input, textarea, select');
    if (control) control.focus();
    note.scrollIntoView({ block: 'nearest' });
  }

  async function submit(event) {
    event.preventDefault();
    clearErrors();
    save.disabled = true;
    try {
      const body = collect();
      const saved = editing
        ? await api.put(api.planPath(plan.planId), body, { ifMatch: plan.version })
        : await api.post('/plan', body);
      dialog.close();
      dialog.remove();
      onSaved(saved);
    } catch (error) {
      if (error.status === 400 && error.field) place(error);
      else {
        problem.hidden = false;
        replace(problem, errorText(error));
      }
    } finally {
      save.disabled = false;
    }
  }

  document.body.appendChild(dialog);
  dialog.showModal();
  planName.focus();
  return dialog;
}

function localInput(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}
