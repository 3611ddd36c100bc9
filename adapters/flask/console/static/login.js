// The login page: an API token becomes a session cookie (POST /session).
import * as api from './api.js';
import { h, replace } from './dom.js';
import { LANGUAGES, lang, setLang, t } from './i18n.js';
import { errorText } from './ui.js';

export function loginView(onLoggedIn) {
  const token = h('input', { type: 'password', name: 'token', id: 'login-token', autocomplete: 'current-password', required: true, spellcheck: 'false' });
  const problem = h('p', { class: 'field-error', role: 'alert', hidden: true });
  const button = h('button', { type: 'submit', class: 'primary' }, t('login.submit'));
  const form = h(
    'form',
    {
      class: 'login',
      onSubmit: async (event) => {
        event.preventDefault();
        button.disabled = true;
        problem.hidden = true;
        try {
          const actor = await api.login(token.value.trim());
          onLoggedIn(actor);
        } catch (error) {
          problem.hidden = false;
          replace(problem, error.status === 401 || error.status === 400 ? t('login.bad') : errorText(error));
          token.select();
        } finally {
          button.disabled = false;
        }
      },
    },
    h('h1', {}, t('app.title')),
    h('p', { class: 'muted' }, t('login.intro')),
    h('label', { class: 'field', for: 'login-token' }, h('span', {}, t('login.token')), token),
    problem,
    h('div', { class: 'dialog-buttons' }, button),
    h(
      'p',
      { class: 'login-lang' },
      LANGUAGES.map(([code, name]) => h('button', { type: 'button', class: ['link', code === lang() ? 'current' : ''], onClick: () => setLang(code) }, name)),
    ),
  );
  window.setTimeout(() => token.focus(), 0);
  return h('div', { class: 'login-page' }, form);
}
