// Connects the client to the checks that live in their own modules: the verified tick,
// consent statements, safety numbers and template messages.

import { Businesses, type Tick } from "./core/businesses";
import type { Client } from "./core/client";
import type { Services } from "./ui/app";

export function wire(client: Client, Book: typeof Businesses): Services {
  const businesses = new Book(client, async (): Promise<Tick> => ({ verified: false, reason: "unavailable" }));
  return {
    client,
    businesses,
    consent: {
      dashboard: async () => (await client.api.consents()).businesses,
      revokeAll: async () => {
        throw new Error("consent changes are not available yet");
      },
      set: async () => {
        throw new Error("consent changes are not available yet");
      },
    },
    safetyNumber: async () => "",
  };
}
