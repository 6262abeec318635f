import { defineConfig } from 'drizzle-kit';

/** The Postgres dialect of the index: `npm run db:generate` writes both dialects' migrations. */
export default defineConfig({
  dialect: 'postgresql',
  schema: './src/catalog/schema.pg.ts',
  out: './migrations/pg',
});
