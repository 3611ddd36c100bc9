// The in-system messages (站内信): unread first; opening one marks it read and shows its plan.
import * as api from './api.js';
import { h, replace } from './dom.js';
import { fmtTime, label, t } from './i18n.js';
import { errorText, pager } from './ui.js';

const PAGE_SIZE = 20;

export class MessagesView {
  constructor(context) {
    this.context = context;
    this.page = 1;
    this.onlyUnread = false;
    this.lastKey = null;
    this.expanded = new Set(); // kept open across the poll's re-renders
    this.list = h('ul', { class: 'message-list' });
    this.footer = h('div', { class: 'list-footer' });
    this.problem = h('p', { class: 'banner banner-error', role: 'alert', hidden: true });
    const unread = h('input', { type: 'checkbox', name: 'unread' });
    unread.addEventListener('change', () => {
      this.onlyUnread = unread.checked;
      this.page = 1;
      this.refresh();
    });
    this.el = h(
      'section',
      { class: 'messages' },
      h('div', { class: 'toolbar' }, h('h1', {}, t('nav.messages')), h('label', { class: 'check' }, unread, ' ', t('messages.unreadOnly'))),
      this.problem,
      this.list,
      this.footer,
    );
  }

  title() {
    return t('nav.messages');
  }

  async refresh() {
    let page;
    try {
      page = await api.get('/messages', { page: this.page, pageSize: PAGE_SIZE, unread: this.onlyUnread ? 'true' : undefined });
    } catch (error) {
      this.problem.hidden = false;
      replace(this.problem, errorText(error));
      return;
    }
    this.problem.hidden = true;
    const key = JSON.stringify(page);
    if (key === this.lastKey) return;
    this.lastKey = key;
    replace(this.list, page.items.length ? page.items.map((m) => this.item(m)) : h('li', { class: 'muted' }, t('messages.empty')));
    replace(
      this.footer,
      pager(page.page, page.pageSize, page.total, (next) => {
        this.page = next;
        this.refresh();
      }),
    );
  }

  item(message) {
    const body = h('pre', { class: 'message-body', hidden: !this.expanded.has(message.id) }, message.body);
    const open = async (toggle = true) => {
      if (toggle) body.hidden = !body.hidden;
      if (body.hidden) this.expanded.delete(message.id);
      else this.expanded.add(message.id);
      if (!message.read) {
        try {
          await api.post(`/messages/${encodeURIComponent(message.id)}/read`);
          message.read = true;
          row.classList.remove('unread');
          this.context.refreshBadge();
        } catch (error) {
          this.problem.hidden = false;
          replace(this.problem, errorText(error));
        }
      }
    };
    const row = h(
      'li',
      { class: ['message', message.read ? '' : 'unread', `severity-${message.severity || 'info'}`], dataset: { messageId: String(message.id) } },
      h(
        'div',
        { class: 'message-head' },
        h('button', { type: 'button', class: 'link message-title', onClick: () => open() }, message.title),
        h('span', { class: ['badge', `severity-${message.severity || 'info'}`] }, label('severity', message.severity || 'info')),
        h('span', { class: 'muted small' }, `${label('log', message.event)} · ${fmtTime(message.createdAt)}`),
        message.planId ? h('a', { href: `#/plans/${encodeURIComponent(message.planId)}`, class: 'small', onClick: () => open(false) }, t('messages.openPlan')) : null,
      ),
      body,
    );
    return row;
  }

  destroy() {}
}
