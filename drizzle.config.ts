import { defineConfig } from 'drizzle-kit';

export default defineConfig({
  dialect: 'sqlite',
  schema: './src/catalog/schema.sqlite.ts',
  out: './migrations/sqlite',
});
