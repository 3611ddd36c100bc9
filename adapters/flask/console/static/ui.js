// Small pieces every view uses: status badges, progress bars, toasts, a confirmation dialog.
import { h, replace } from './dom.js';
import { label, t } from './i18n.js';

export function statusBadge(status) {
  return h('span', { class: ['badge', `status-${String(status).toLowerCase()}`], dataset: { status } }, label('status', status));
}

export function itemBadge(status) {
  return h('span', { class: ['badge', `item-${String(status).toLowerCase()}`] }, label('item', status));
}

const FIXED_SETS = { IP_WHITELIST: 'ipWhitelist', USER_WHITELIST: 'userWhitelist' };

/** What share of clients a plan serves now, for its progress bar (null: a fixed set). */
export function served(plan) {
  if (plan.status === 'COMPLETED') return 100;
  if (plan.status === 'DRAFT' || plan.status === 'ROLLBACK') return 0;
  if (plan.grayStrategy === 'PERCENTAGE' || plan.grayStrategy === 'CANARY') return Number(plan.progress.percentage) || 0;
  return null;
}

export function strategySummary(plan) {
  const rules = plan.grayRules || {};
  const list = FIXED_SETS[plan.grayStrategy];
  if (list) return t('summary.entries', { n: (rules[list] || []).length });
  if (plan.grayStrategy === 'PERCENTAGE') return `${rules.percentage}%`;
  if (plan.grayStrategy === 'CANARY' && rules.canary) {
    return t('summary.canary', {
      n: (rules.canary.canaryInstances || []).length,
      step: rules.canary.stepPercentage,
      interval: rules.canary.stepInterval,
    });
  }
  if (plan.grayStrategy === 'LABEL' && rules.labels) {
    return Object.entries(rules.labels)
      .map(([name, values]) => `${name}=${values.join('|')}`)
      .join(', ');
  }
  return '';
}

export function progressBar(plan) {
  const share = served(plan);
  const bar = h('div', { class: ['progress', `progress-${plan.status.toLowerCase()}`], role: 'progressbar' });
  const fill = h('div', { class: 'progress-fill' });
  bar.appendChild(fill);
  let text;
  if (share === null) {
    fill.classList.add('progress-fixed');
    fill.style.width = plan.status === 'ACTIVE' || plan.status === 'PAUSED' ? '100%' : '0%';
    text = t('progress.fixed');
  } else {
    fill.style.width = `${Math.max(0, Math.min(100, share))}%`;
    bar.setAttribute('aria-valuenow', String(share));
    bar.setAttribute('aria-valuemin', '0');
    bar.setAttribute('aria-valuemax', '100');
    text = `${Number(share.toFixed(2))}%`;
  }
  return h('div', { class: 'progress-cell', dataset: { percentage: share === null ? '' : String(share) } }, bar, h('span', { class: 'progress-text' }, text));
}

/** A person-readable sentence for an API failure. */
export function errorText(error) {
  if (!error) return '';
  if (error.code === 'NETWORK') return t('error.network');
  const details = error.details || {};
  if (error.status === 403) {
    if (details.reason === 'csrf') return t('error.csrf');
    const roles = details.missingRoles ? ` ${t('error.missingRoles', { roles: details.missingRoles.join(', ') })}` : '';
    return `${t('error.permission')} ${error.message}${roles}`;
  }
  if (error.code === 'INVALID_TRANSITION') {
    const allowed = (details.allowedActions || []).map((a) => label('action', a)).join(', ') || t('error.none');
    return t('error.transition', { status: label('status', details.status || ''), allowed });
  }
  return `${label('code', error.code)}: ${error.message}`;
}

let toastBox = null;

export function toast(message, kind = 'info') {
  if (!toastBox || !toastBox.isConnected) {
    toastBox = h('div', { class: 'toasts', role: 'status', 'aria-live': 'polite' });
    document.body.appendChild(toastBox);
  }
  const item = h('div', { class: ['toast', `toast-${kind}`], dataset: { kind } }, h('span', { class: 'toast-text' }, message));
  const close = h('button', { type: 'button', class: 'toast-close', 'aria-label': t('common.close'), onClick: () => item.remove() }, '×');
  item.appendChild(close);
  toastBox.appendChild(item);
  window.setTimeout(() => item.remove(), kind === 'error' ? 12000 : 5000);
  return item;
}

/**
 * A modal confirmation; resolves to {reason, force} or null when cancelled.
 * options: {title, message, confirm, danger, reason: 'optional'|'required'|undefined, force}
 */
export function confirmDialog(options) {
  return new Promise((resolve) => {
    const reason = options.reason
      ? h('textarea', { name: 'reason', rows: 3, class: 'reason', placeholder: t(options.reason === 'required' ? 'confirm.reasonRequired' : 'confirm.reasonOptional') })
      : null;
    const force = options.force ? h('input', { type: 'checkbox', name: 'force' }) : null;
    const problem = h('p', { class: 'field-error', hidden: true });
    const dialog = h('dialog', { class: 'confirm', 'aria-labelledby': 'confirm-title' });
    const done = (value) => {
      dialog.close();
      dialog.remove();
      resolve(value);
    };
    const ok = h('button', { type: 'submit', class: options.danger ? 'danger' : 'primary', dataset: { confirm: 'ok' } }, options.confirm || t('common.ok'));
    const form = h(
      'form',
      {
        method: 'dialog',
        onSubmit: (event) => {
          event.preventDefault();
          const text = reason ? reason.value.trim() : '';
          if (options.reason === 'required' && !text) {
            problem.hidden = false;
            replace(problem, t('confirm.reasonMissing'));
            reason.focus();
            return;
          }
          done({ reason: text, force: force ? force.checked : false });
        },
      },
      h('h2', { id: 'confirm-title' }, options.title),
      h('p', { class: 'confirm-message' }, options.message),
      reason ? h('label', { class: 'field' }, h('span', {}, t('confirm.reason')), reason) : null,
      problem,
      force ? h('label', { class: 'check' }, force, ' ', t('confirm.force')) : null,
      h(
        'div',
        { class: 'dialog-buttons' },
        h('button', { type: 'button', dataset: { confirm: 'cancel' }, onClick: () => done(null) }, t('common.cancel')),
        ok,
      ),
    );
    dialog.appendChild(form);
    dialog.addEventListener('cancel', (event) => {
      event.preventDefault();
      done(null);
    });
    document.body.appendChild(dialog);
    dialog.showModal();
    (reason || ok).focus();
  });
}

export function pager(page, pageSize, total, go) {
  const pages = Math.max(1, Math.ceil(total / pageSize));
  return h(
    'nav',
    { class: 'pager', 'aria-label': t('pager.label') },
    h('button', { type: 'button', disabled: page <= 1, dataset: { page: 'prev' }, onClick: () => go(page - 1) }, t('pager.prev')),
    h('span', { class: 'pager-text' }, t('pager.text', { page, pages, total })),
    h('button', { type: 'button', disabled: page >= pages, dataset: { page: 'next' }, onClick: () => go(page + 1) }, t('pager.next')),
  );
}

export function emptyRow(columns, text) {
  return h('tr', { class: 'empty' }, h('td', { colspan: columns }, text));
}
