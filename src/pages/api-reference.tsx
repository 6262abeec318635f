import type { openApiDocument } from '../api/openapi.js';
import { Layout } from './layout.js';

type Document = ReturnType<typeof openApiDocument>;
type Parameter = { name: string; in: string; required: boolean; schema: Record<string, unknown>; description?: string };
type OperationObject = {
  operationId: string;
  tags: string[];
  summary: string;
  description: string;
  parameters?: Parameter[];
  requestBody?: { content: Record<string, { schema: unknown }> };
  responses: Record<string, { description: string; content?: Record<string, { schema: unknown }> }>;
};

/**
 * The API reference, read off the OpenAPI document itself (GET /api/v1/openapi.json): every operation by tag, its
 * parameters, body and answers with their schemas. Server-rendered on our own origin, nothing fetched.
 */
export function ApiReference(props: { document: Document }) {
  const operations = Object.entries(props.document.paths).flatMap(([path, methods]) =>
    Object.entries(methods).map(([method, op]) => ({ path, method, op: op as OperationObject })),
  );
  const json = (value: unknown) => JSON.stringify(value, null, 2);
  return (
    <Layout title="PACS-lite API reference" nav={[{ href: '/api/v1/openapi.json', label: 'openapi.json' }]}>
      <p>{props.document.info.description}</p>
      <p>
        Base URL: <code>{props.document.servers[0]!.url}</code>. The same description as <a href="/api/v1/openapi.json">OpenAPI 3.1</a>, to generate a client from.
      </p>
      <ul>
        {props.document.tags.map((t) => (
          <li><a href={`#${t.name.replace(/\W+/g, '-')}`}>{t.name}</a></li>
        ))}
      </ul>
      {props.document.tags.map((t) => (
        <section id={t.name.replace(/\W+/g, '-')}>
          <h2>{t.name}</h2>
          {operations
            .filter((o) => o.op.tags.includes(t.name))
            .map(({ path, method, op }) => (
              <article id={op.operationId} class="operation">
                <h3>
                  <code>{method.toUpperCase()} /api/v1{path}</code>
                </h3>
                <p><b>{op.summary}</b></p>
                {op.description.split('\n\n').map((p) => <p>{p}</p>)}
                {op.parameters && (
                  <table>
                    <thead><tr><th>Parameter</th><th>In</th><th>Required</th><th>Schema</th><th>Meaning</th></tr></thead>
                    <tbody>
                      {op.parameters.map((p) => (
                        <tr><td><code>{p.name}</code></td><td>{p.in}</td><td>{p.required ? 'yes' : 'no'}</td><td><code>{json(p.schema)}</code></td><td>{p.description ?? ''}</td></tr>
                      ))}
                    </tbody>
                  </table>
                )}
                {op.requestBody &&
                  Object.entries(op.requestBody.content).map(([type, c]) => (
                    <details>
                      <summary>Request body ({type})</summary>
                      <pre>{json(c.schema)}</pre>
                    </details>
                  ))}
                {Object.entries(op.responses).map(([status, r]) => (
                  <details>
                    <summary>{status}: {r.description}{r.content ? ` (${Object.keys(r.content).join(', ')})` : ''}</summary>
                    {r.content && Object.values(r.content).map((c) => <pre>{json(c.schema)}</pre>)}
                  </details>
                ))}
              </article>
            ))}
        </section>
      ))}
    </Layout>
  );
}
