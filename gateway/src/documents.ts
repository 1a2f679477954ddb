/**
 * Subscription documents, parsed and validated once per query text and schema. Apollo Server
 * keeps such a store for HTTP; graphql-ws has none, and every `transferStatusChanged` subscribe
 * parsed and validated the same text again: ~0.8 ms of the gateway's CPU per transfer in the saga
 * benchmark's profile (bench/saga-results.md, 2026-12-03), validation the larger part.
 *
 * Parse errors are not kept: a client sending them is metered by the rate limit before parsing,
 * and keeping them would let it fill the cache with junk. A document that parsed is kept with its
 * validation errors, which depend on the text and the schema only. A new schema (a supergraph
 * update) starts an empty cache.
 */
import { GraphQLError, parse, validate, type DocumentNode, type GraphQLSchema } from "graphql";
import { LRUCache } from "lru-cache";

export type ParsedDocument = { document: DocumentNode; errors?: never } | { document?: never; errors: readonly GraphQLError[] };

interface Entry {
  document: DocumentNode;
  validationErrors: readonly GraphQLError[];
}

export class DocumentCache {
  private readonly bySchema = new WeakMap<GraphQLSchema, LRUCache<string, Entry>>();

  private readonly maxChars: number;

  /**
   * `maxChars`: the query texts kept, in characters at most. Their documents are kept with them, and
   * a parsed document (its tokens and locations) takes ~75 times its text's size on the heap
   * (measured on subscription texts): 512 Ki characters hold ~37 MiB, near Apollo Server's own
   * store for HTTP (30 MiB). A subscription's text is a few hundred characters: thousands of them.
   */
  constructor(maxChars = 512 * 1024) {
    this.maxChars = maxChars;
  }

  /** The document for `query`, or its errors: GRAPHQL_PARSE_FAILED or GRAPHQL_VALIDATION_FAILED. */
  get(schema: GraphQLSchema, query: string, maxTokens: number): ParsedDocument {
    let cache = this.bySchema.get(schema);
    if (!cache) {
      cache = new LRUCache<string, Entry>({ maxSize: this.maxChars, sizeCalculation: (_, key) => Math.max(1, key.length) });
      this.bySchema.set(schema, cache);
    }
    let entry = cache.get(query);
    if (!entry) {
      let document: DocumentNode;
      try {
        document = parse(query, { maxTokens });
      } catch (error) {
        return { errors: [new GraphQLError((error as Error).message, { extensions: { code: "GRAPHQL_PARSE_FAILED" } })] };
      }
      entry = { document, validationErrors: validate(schema, document) };
      cache.set(query, entry);
    }
    if (entry.validationErrors.length === 0) return { document: entry.document };
    // Fresh errors each time: the caller's error handling may add to them.
    return {
      errors: entry.validationErrors.map(
        (error) => new GraphQLError(error.message, { nodes: error.nodes, extensions: { code: "GRAPHQL_VALIDATION_FAILED" } }),
      ),
    };
  }
}
