import { useState, type FormEvent } from "react";
import { Link, Navigate, useNavigate, useSearchParams } from "react-router";
import { Button } from "@/components/ui/button";
import { Card } from "@/components/ui/card";
import { Field, FormError } from "@/components/ui/field";
import { anonymous } from "@/lib/api";
import { problem, type Problem } from "@/lib/errors";
import { authorizationRequest, remember, safeNext, SignInError } from "@/lib/oidc";
import { signedIn } from "@/lib/session";
import { signInProvider, useSignInProvider } from "@/lib/useSignInOptions";
import { useSession } from "@/lib/useSession";

function AuthForm({ mode }: { mode: "sign-in" | "sign-up" }) {
  const session = useSession();
  const navigate = useNavigate();
  const [params] = useSearchParams();
  const next = safeNext(params.get("next"));
  const provider = useSignInProvider();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Problem | null>(null);
  const signUp = mode === "sign-up";

  if (session) return <Navigate to={next} replace />;

  const submit = async (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const form = new FormData(e.currentTarget);
    const email = String(form.get("email"));
    const password = String(form.get("password"));
    setBusy(true);
    setError(null);
    try {
      const answer = signUp
        ? await anonymous.auth.register({ email, password, name: String(form.get("name")) })
        : await anonymous.auth.login({ email, password });
      signedIn(answer.session);
      navigate(next, { replace: true });
    } catch (err) {
      setError(problem(err));
    } finally {
      setBusy(false);
    }
  };

  // Off to the identity provider; it sends the person back to /auth/callback.
  const withProvider = async () => {
    if (!provider) return;
    setBusy(true);
    setError(null);
    try {
      // Its address was unknown when the page asked (the provider was unreachable): ask again.
      const current = provider.authorizationEndpoint ? provider : ((await signInProvider(true)) ?? provider);
      const { url, pending } = await authorizationRequest(current, window.location.origin, next);
      remember(pending);
      window.location.assign(url);
    } catch (err) {
      setError(err instanceof SignInError ? { code: undefined, message: err.message, fields: {} } : problem(err));
      setBusy(false);
    }
  };

  return (
    <section className="mx-auto w-full max-w-sm px-4 py-12">
      <Card>
        <h1 className="mb-4 text-2xl font-bold">{signUp ? "Create your account" : "Sign in"}</h1>
        {provider && (
          <>
            <Button type="button" variant="outline" className="w-full" onClick={withProvider} disabled={busy}>
              Sign in with {provider.displayName}
            </Button>
            <div className="my-4 flex items-center gap-3 text-sm text-slate-500" aria-hidden="true">
              <span className="h-px flex-1 bg-slate-200" />
              or with your email
              <span className="h-px flex-1 bg-slate-200" />
            </div>
          </>
        )}
        <form className="grid gap-4" onSubmit={submit} noValidate>
          {signUp && <Field label="Name" name="name" autoComplete="name" required error={error?.fields.name} />}
          <Field label="Email" name="email" type="email" autoComplete="email" required error={error?.fields.email} />
          <Field
            label="Password"
            name="password"
            type="password"
            autoComplete={signUp ? "new-password" : "current-password"}
            required
            error={error?.fields.password}
          />
          <FormError>{error && Object.keys(error.fields).length === 0 ? error.message : undefined}</FormError>
          <Button type="submit" disabled={busy}>
            {signUp ? "Sign up" : "Sign in"}
          </Button>
        </form>
        <p className="mt-4 text-sm text-slate-600">
          {signUp ? "Already have an account? " : "New here? "}
          <Link className="font-medium text-indigo-700 underline" to={`${signUp ? "/sign-in" : "/sign-up"}?next=${encodeURIComponent(next)}`}>
            {signUp ? "Sign in" : "Create an account"}
          </Link>
        </p>
      </Card>
    </section>
  );
}

export const SignIn = () => <AuthForm mode="sign-in" />;
export const SignUp = () => <AuthForm mode="sign-up" />;
