// The server's sign-in options (GetSignInOptions): which identity provider, if any, the
// sign-in and sign-up pages offer beside email + password.
import { useEffect, useState } from "react";
import type { OidcProvider } from "@/gen/quickchat/v1/auth_pb";
import { anonymous } from "./api";

let asked: Promise<OidcProvider | undefined> | null = null;

/** The configured provider, asked once per page load (again after a failure, or when `fresh`). */
export function signInProvider(fresh = false): Promise<OidcProvider | undefined> {
  if (!asked || fresh) {
    const answer = anonymous.auth.getSignInOptions({}).then((r) => r.oidc);
    asked = answer;
    answer.catch(() => {
      if (asked === answer) asked = null;
    });
  }
  return asked;
}

/** The provider to offer; undefined while asking, when there is none, or when the server cannot say. */
export function useSignInProvider(): OidcProvider | undefined {
  const [provider, setProvider] = useState<OidcProvider>();
  useEffect(() => {
    let live = true;
    signInProvider().then(
      (p) => live && setProvider(p),
      // Without an answer the page offers email + password, which work without one.
      () => {},
    );
    return () => {
      live = false;
    };
  }, []);
  return provider;
}
