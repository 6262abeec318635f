import { eq, sql } from 'drizzle-orm';
import { trimAeTitle, type ApplicationEntity, type ApplicationEntityRecords } from './catalog.js';
import type { IndexTables } from './index-tables.js';
import { changed, columnsOf, fromExcluded, insertInto, SelectList, type Run } from './sql-rows.js';

type Table = IndexTables['applicationEntities'];

/** ApplicationEntityRecords over the application_entities table, one text of SQL for both dialects. */
export class SqlApplicationEntities implements ApplicationEntityRecords {
  private readonly list: SelectList<ApplicationEntity>;

  constructor(
    private readonly t: Table,
    private readonly read: Run,
    private readonly write: Run,
  ) {
    this.list = new SelectList(columnsOf(t));
  }

  applicationEntities(): Promise<ApplicationEntity[]> {
    return this.read(this.list.select(sql`FROM ${this.t} ORDER BY ${this.t.aeTitle}`));
  }

  async applicationEntity(aeTitle: string): Promise<ApplicationEntity | undefined> {
    const [ae] = await this.read(this.list.select(sql`FROM ${this.t} WHERE ${eq(this.t.aeTitle, trimAeTitle(aeTitle))}`));
    return ae;
  }

  putApplicationEntity(ae: Omit<ApplicationEntity, 'createdAt'>): Promise<ApplicationEntity> {
    const { t, list } = this;
    const row: ApplicationEntity = { ...ae, aeTitle: trimAeTitle(ae.aeTitle), createdAt: Date.now() };
    return this.write(
      (function* () {
        // Every column but the title and createdAt: a replaced entity keeps the date it became known.
        const replaced = fromExcluded(t, ['host', 'port', 'store', 'query', 'retrieve', 'description']);
        yield* insertInto(t, [row], sql`ON CONFLICT (${sql.identifier(t.aeTitle.name)}) DO UPDATE SET ${replaced}`);
        const [stored] = yield* list.select(sql`FROM ${t} WHERE ${eq(t.aeTitle, row.aeTitle)}`);
        return stored!;
      })(),
    );
  }

  async removeApplicationEntity(aeTitle: string): Promise<boolean> {
    return (await this.write(changed(sql`DELETE FROM ${this.t} WHERE ${eq(this.t.aeTitle, trimAeTitle(aeTitle))}`, this.t.aeTitle))) > 0;
  }
}
