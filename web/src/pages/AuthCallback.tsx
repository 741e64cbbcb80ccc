import { useEffect, useState } from "react";
import { Link, useNavigate, useSearchParams } from "react-router";
import { Button } from "@/components/ui/button";
import { Card } from "@/components/ui/card";
import { FormError } from "@/components/ui/field";
import { anonymous } from "@/lib/api";
import { problem } from "@/lib/errors";
import { checkCallback, safeNext, SignInError, takePending } from "@/lib/oidc";
import { signedIn } from "@/lib/session";

/** One exchange per answer, however often the page mounts or renders (React's StrictMode
 * mounts twice): the answer is used once. */
const finishing = new Map<string, Promise<string>>();

async function exchange(params: URLSearchParams): Promise<string> {
  const checked = checkCallback(params, takePending());
  if (!checked.ok) throw new SignInError(checked.message);
  const { code, pending } = checked;
  const answer = await anonymous.auth.loginWithAuthorizationCode({
    code,
    codeVerifier: pending.codeVerifier,
    redirectUri: pending.redirectUri,
    nonce: pending.nonce,
  });
  signedIn(answer.session);
  return safeNext(pending.next);
}

function finish(params: URLSearchParams): Promise<string> {
  const key = params.toString();
  let done = finishing.get(key);
  if (!done) {
    done = exchange(params);
    finishing.set(key, done);
  }
  return done;
}

/** Where the identity provider sends the person back: the code becomes a session. */
export function AuthCallback() {
  const [params] = useSearchParams();
  const navigate = useNavigate();
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    let live = true;
    finish(params).then(
      (next) => live && navigate(next, { replace: true }),
      (err) => live && setError(err instanceof SignInError ? err.message : problem(err).message),
    );
    return () => {
      live = false;
    };
  }, [params, navigate]);

  return (
    <section className="mx-auto w-full max-w-sm px-4 py-12">
      <Card>
        {error ? (
          <>
            <h1 className="mb-4 text-2xl font-bold">Sign-in failed</h1>
            <FormError>{error}</FormError>
            <Button asChild className="mt-4 w-full">
              <Link to="/sign-in">Back to sign in</Link>
            </Button>
          </>
        ) : (
          <p role="status" className="text-slate-600">
            Signing you in…
          </p>
        )}
      </Card>
    </section>
  );
}
