import { raw } from 'hono/html';
import type { Child } from 'hono/jsx';

/** One small style for every page of ours: readable on a phone, no framework, nothing fetched. */
const STYLE = `
*{box-sizing:border-box}body{margin:0;font:15px/1.45 system-ui,sans-serif;color:#1b1f24;background:#f6f7f9}
header{background:#1d3557;color:#fff;padding:.6em 1em;display:flex;flex-wrap:wrap;gap:.4em 1.2em;align-items:center}
header a{color:#fff;text-decoration:none}header strong{margin-right:auto}nav a[aria-current]{text-decoration:underline}
main{max-width:70em;margin:0 auto;padding:1em}h1{font-size:1.3em;margin:.2em 0 .8em}
table{border-collapse:collapse;width:100%;background:#fff;font-size:.9em}th,td{text-align:left;padding:.35em .5em;border-bottom:1px solid #dde}
.scroll{overflow-x:auto}form.row{display:flex;flex-wrap:wrap;gap:.5em;align-items:end;margin:0 0 1em}
label{display:flex;flex-direction:column;font-size:.85em}input,select,button{font:inherit;padding:.35em .5em}
button{background:#1d3557;color:#fff;border:0;border-radius:3px;cursor:pointer}button.danger{background:#b00020}
.notice{background:#fff8d6;border:1px solid #e0c64f;padding:.8em;margin:0 0 1em}.notice code{word-break:break-all}
.error{background:#fde8e8;border:1px solid #b00020;padding:.8em;margin:0 0 1em}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.3em 1em;background:#fff;padding:1em}dt{font-weight:600}dd{margin:0}
.muted{color:#667}
fieldset.roles{border:0;padding:0;margin:0;display:flex;flex-wrap:wrap;gap:0 .7em;align-items:center}fieldset.roles legend{font-size:.85em;padding:0}
fieldset.roles label{flex-direction:row;align-items:center;gap:.25em;font-size:1em}td form.row{margin:0 0 .3em;flex-wrap:nowrap}
td fieldset.roles legend{position:absolute;left:-9999px}
@media (max-width:40em){table.cards thead{display:none}table.cards tr{display:block;border-bottom:1px solid #dde;padding:.4em 0}
table.cards td{display:flex;flex-wrap:wrap;gap:.2em .6em;border:0;padding:.15em .5em}table.cards td[data-label]::before{content:attr(data-label);font-weight:600;min-width:6.5em}}
`;

export type NavLink = { href: string; label: string };

/** The frame of a page: title, the navigation given, and the content. */
export function Layout(props: { title: string; nav: NavLink[]; current?: string; children?: Child }) {
  // Without a doctype a browser lays the page out in quirks mode.
  return (
    <>
      {raw('<!doctype html>')}
      <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>{props.title} · PACS-lite</title>
        <style dangerouslySetInnerHTML={{ __html: STYLE }} />
      </head>
      <body>
        <header>
          <strong>PACS-lite</strong>
          <nav>
            {props.nav.map((link) => (
              <a href={link.href} aria-current={link.href === props.current ? 'page' : undefined} style="margin-right:1em">
                {link.label}
              </a>
            ))}
          </nav>
        </header>
        <main>
          <h1>{props.title}</h1>
          {props.children}
        </main>
      </body>
      </html>
    </>
  );
}

/** A button that posts to `action` and nothing else: one change, from our own page (admin.tsx checks the origin). */
export function PostButton(props: { action: string; label: string; danger?: boolean; row?: boolean }) {
  return (
    <form class={props.row ? 'row' : undefined} method="post" action={props.action}>
      <button class={props.danger ? 'danger' : undefined} type="submit">{props.label}</button>
    </form>
  );
}
