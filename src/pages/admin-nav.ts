import type { NavLink } from './layout.js';

/** The administrator's pages, as every one of them links to the others. */
export const ADMIN_NAV: NavLink[] = [
  { href: '/admin/storage', label: 'Storage' },
  { href: '/admin/keys', label: 'API keys' },
  { href: '/admin/audit', label: 'Audit trail' },
  { href: '/admin/uploads', label: 'Uploads' },
  { href: '/admin/webhooks', label: 'Webhooks' },
  { href: '/admin/trash', label: 'Trash' },
  { href: '/admin/users', label: 'Users' },
  { href: '/logout', label: 'Sign out' },
];
