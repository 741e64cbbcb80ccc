// What a failed call means to a person: the server's own message, and per-field messages
// from INVALID_ARGUMENT's BadRequest details (shown next to the fields).
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema } from "@/gen/google/rpc/error_details_pb";

export interface Problem {
  code: Code | undefined;
  message: string;
  fields: Record<string, string>;
}

export function problem(err: unknown): Problem {
  if (err instanceof ConnectError) {
    const fields: Record<string, string> = {};
    for (const detail of err.findDetails(BadRequestSchema)) {
      for (const v of detail.fieldViolations) fields[v.field] = v.description;
    }
    return { code: err.code, message: messageFor(err), fields };
  }
  return { code: undefined, message: String(err), fields: {} };
}

/** The request never got an answer: the network or the server is down (fetch failed). */
export function unreachable(err: unknown): boolean {
  return (
    err instanceof ConnectError &&
    (err.code === Code.Unavailable || (err.code === Code.Unknown && err.cause instanceof TypeError))
  );
}

function messageFor(err: ConnectError): string {
  if (unreachable(err)) return "The server cannot be reached. Check your connection and try again.";
  switch (err.code) {
    case Code.Unavailable:
      return "The server cannot be reached. Check your connection and try again.";
    case Code.Internal:
    case Code.Unknown:
      return "Something went wrong on the server. Try again.";
    default:
      return err.rawMessage || err.message;
  }
}

export function isCode(err: unknown, code: Code): boolean {
  return err instanceof ConnectError && err.code === code;
}

export { Code };
