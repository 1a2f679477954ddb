/** The customer's transfers, sent and received, newest first, a page at a time. */
import { useEffect, useState } from "react";
import { request } from "../api.ts";
import { formatPaise } from "../money.ts";
import { MyTransfers, type Transfer } from "../operations.ts";
import { ErrorNotice, Loading, PageHeading, formatDateTime } from "../ui.tsx";

export const HISTORY_PAGE_SIZE = 10;

export function History() {
  const [rows, setRows] = useState<Transfer[]>([]);
  const [next, setNext] = useState<{ hasNextPage: boolean; endCursor: string | null }>({ hasNextPage: true, endCursor: null });
  const [loading, setLoading] = useState(false);
  const [error, setError] = useState<unknown>();

  async function loadMore(after: string | null) {
    setLoading(true);
    setError(undefined);
    try {
      const { myTransfers } = await request(MyTransfers, { first: HISTORY_PAGE_SIZE, after, directions: ["SENT", "RECEIVED"] });
      setRows((previous) => (after === null ? [] : previous).concat(myTransfers.edges.map((edge) => edge.node)));
      setNext(myTransfers.pageInfo);
    } catch (caught) {
      setError(caught);
    } finally {
      setLoading(false);
    }
  }
  useEffect(() => {
    void loadMore(null);
  }, []);

  return (
    <main>
      <PageHeading>History</PageHeading>
      {rows.length === 0 && !loading && !error && <p>No transfers yet.</p>}
      {rows.length > 0 && (
        <div className="table-scroll">
          <table>
            <caption className="visually-hidden">Your transfers, sent and received, newest first</caption>
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">From</th>
                <th scope="col">To</th>
                <th scope="col" className="amount">
                  Amount
                </th>
                <th scope="col">Status</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((transfer) => (
                <HistoryRow key={transfer.id} transfer={transfer} />
              ))}
            </tbody>
          </table>
        </div>
      )}
      {loading && <Loading what="transfers" />}
      <ErrorNotice error={error} onRetry={() => void loadMore(rows.length ? next.endCursor : null)} />
      {next.hasNextPage && rows.length > 0 && !loading && (
        <button type="button" onClick={() => void loadMore(next.endCursor)}>
          Show older transfers
        </button>
      )}
    </main>
  );
}

/** One transfer: a received one shows what arrived (+amount), a sent one its status. */
function HistoryRow({ transfer }: { transfer: Transfer }) {
  const received = transfer.direction === "RECEIVED";
  return (
    <tr data-direction={transfer.direction}>
      <td>
        <a href={`#/transfers/${transfer.id}`}>{formatDateTime(transfer.createdAt)}</a>
      </td>
      <td>{transfer.fromMaskedNumber}</td>
      <td>{transfer.toMaskedNumber}</td>
      <td className={received ? "amount received" : "amount"}>
        {received ? "+" : ""}
        {formatPaise(transfer.amount.minor, transfer.amount.currency)}
      </td>
      <td>{received ? "Received" : transfer.status}</td>
    </tr>
  );
}
