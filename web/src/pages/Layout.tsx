import { Link, Outlet, useNavigate } from "react-router";
import { Button } from "@/components/ui/button";
import { signOut } from "@/lib/session";
import { useSession } from "@/lib/useSession";

export function Layout() {
  const session = useSession();
  const navigate = useNavigate();
  return (
    <div className="flex min-h-full flex-col bg-slate-50 text-slate-900">
      <header className="border-b border-slate-200 bg-white">
        <nav aria-label="Main" className="mx-auto flex h-14 max-w-5xl items-center justify-between gap-2 px-4">
          <Link to="/" className="text-lg font-bold text-indigo-700">
            QuickChat
          </Link>
          <div className="flex items-center gap-2">
            {session ? (
              <>
                <span className="hidden text-sm text-slate-600 sm:inline" data-testid="signed-in-as">
                  {session.user.name}
                </span>
                <Button asChild variant="ghost" size="sm">
                  <Link to="/dashboard">Dashboard</Link>
                </Button>
                <Button
                  variant="outline"
                  size="sm"
                  onClick={async () => {
                    await signOut();
                    navigate("/");
                  }}
                >
                  Sign out
                </Button>
              </>
            ) : (
              <>
                <Button asChild variant="ghost" size="sm">
                  <Link to="/sign-in">Sign in</Link>
                </Button>
                <Button asChild size="sm">
                  <Link to="/sign-up">Sign up</Link>
                </Button>
              </>
            )}
          </div>
        </nav>
      </header>
      <main className="flex flex-1 flex-col">
        <Outlet />
      </main>
    </div>
  );
}
