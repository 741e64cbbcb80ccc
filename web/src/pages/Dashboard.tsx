import { useCallback, useEffect, useState, type FormEvent } from "react";
import { Link, Navigate } from "react-router";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Button } from "@/components/ui/button";
import { Card } from "@/components/ui/card";
import { ConfirmDialog, Dialog } from "@/components/ui/dialog";
import { Field, FormError } from "@/components/ui/field";
import type { Group } from "@/gen/quickchat/v1/group_pb";
import { problem, type Problem } from "@/lib/errors";
import { userClients } from "@/lib/session";
import { useSession } from "@/lib/useSession";
import { formatDate } from "@/lib/utils";

export const shareLink = (groupId: string) => `${window.location.origin}/join/${groupId}`;

export function Dashboard() {
  const session = useSession();
  const [groups, setGroups] = useState<Group[] | null>(null);
  const [loadError, setLoadError] = useState<string>();
  const [editing, setEditing] = useState<Group | "new" | null>(null);
  const [deleting, setDeleting] = useState<Group | null>(null);
  const [notice, setNotice] = useState<string>();

  const load = useCallback(async () => {
    try {
      const { groups } = await userClients.groups.listGroups({ pageSize: 100 });
      setGroups(groups);
      setLoadError(undefined);
    } catch (err) {
      setLoadError(problem(err).message);
    }
  }, []);

  useEffect(() => {
    if (session) void load();
  }, [session, load]);

  if (!session) return <Navigate to="/sign-in?next=%2Fdashboard" replace />;

  const copy = async (group: Group) => {
    const link = shareLink(group.id);
    try {
      await navigator.clipboard.writeText(link);
      setNotice(`Link to "${group.title}" copied: ${link}`);
    } catch {
      setNotice(`Copy this link: ${link}`);
    }
  };

  const remove = async (group: Group) => {
    try {
      await userClients.groups.deleteGroup({ groupId: group.id });
      setNotice(`"${group.title}" was deleted.`);
      await load();
    } catch (err) {
      setNotice(problem(err).message);
    }
  };

  return (
    <section className="mx-auto w-full max-w-5xl px-4 py-8">
      <div className="mb-6 flex flex-wrap items-center justify-between gap-3">
        <h1 className="text-2xl font-bold">Your groups</h1>
        <Button onClick={() => setEditing("new")}>Create group</Button>
      </div>
      <p role="status" aria-live="polite" className="mb-4 min-h-5 break-all text-sm text-slate-700">
        {notice}
      </p>
      <FormError>{loadError}</FormError>
      {groups && groups.length === 0 && <p className="text-slate-600">No groups yet. Create one and share its link.</p>}
      <ul className="grid gap-4 sm:grid-cols-2 lg:grid-cols-3">
        {groups?.map((g) => (
          <li key={g.id}>
            <Card className="flex h-full flex-col gap-3" aria-label={g.title}>
              <div>
                <h2 className="text-lg font-semibold break-words">{g.title}</h2>
                <p className="text-sm text-slate-500">
                  Created {g.createdAt ? formatDate(timestampMs(g.createdAt)) : ""}
                </p>
              </div>
              <div className="mt-auto flex flex-wrap gap-2">
                <Button asChild size="sm">
                  <Link to={`/join/${g.id}`}>Open room</Link>
                </Button>
                <Button size="sm" variant="outline" onClick={() => copy(g)}>
                  Copy link
                </Button>
                <Button size="sm" variant="outline" onClick={() => setEditing(g)}>
                  Edit
                </Button>
                <Button size="sm" variant="ghost" className="text-red-700" onClick={() => setDeleting(g)}>
                  Delete
                </Button>
              </div>
            </Card>
          </li>
        ))}
      </ul>
      {editing && (
        <GroupDialog
          group={editing === "new" ? null : editing}
          onClose={() => setEditing(null)}
          onSaved={async (g, created) => {
            setEditing(null);
            setNotice(created ? `Created "${g.title}". Share its link: ${shareLink(g.id)}` : `Saved "${g.title}".`);
            await load();
          }}
        />
      )}
      <ConfirmDialog
        open={deleting !== null}
        onOpenChange={(open) => !open && setDeleting(null)}
        title={`Delete "${deleting?.title}"?`}
        description="Its members and messages are deleted too, and its link stops working. This cannot be undone."
        confirm="Delete group"
        onConfirm={() => deleting && void remove(deleting)}
      />
    </section>
  );
}

function GroupDialog({
  group,
  onClose,
  onSaved,
}: {
  group: Group | null;
  onClose: () => void;
  onSaved: (group: Group, created: boolean) => void;
}) {
  const [error, setError] = useState<Problem | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const form = new FormData(e.currentTarget);
    const title = String(form.get("title"));
    const passcode = String(form.get("passcode"));
    setBusy(true);
    setError(null);
    try {
      if (group) {
        const { group: saved } = await userClients.groups.updateGroup({
          groupId: group.id,
          title: title !== group.title ? title : undefined,
          passcode: passcode ? passcode : undefined,
        });
        if (saved) onSaved(saved, false);
      } else {
        const { group: created } = await userClients.groups.createGroup({ title, passcode });
        if (created) onSaved(created, true);
      }
    } catch (err) {
      setError(problem(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <Dialog
      open
      onOpenChange={(open) => !open && onClose()}
      title={group ? "Edit group" : "Create a group"}
      description={group ? "Leave the passcode empty to keep it." : "People join with the link and this passcode."}
    >
      <form className="grid gap-4" onSubmit={submit} noValidate>
        <Field label="Title" name="title" defaultValue={group?.title} required error={error?.fields.title} />
        <Field label="Passcode" name="passcode" type="password" autoComplete="new-password" required={!group} error={error?.fields.passcode} />
        <FormError>{error && Object.keys(error.fields).length === 0 ? error.message : undefined}</FormError>
        <div className="flex justify-end gap-2">
          <Button type="button" variant="outline" onClick={onClose}>
            Cancel
          </Button>
          <Button type="submit" disabled={busy}>
            {group ? "Save" : "Create"}
          </Button>
        </div>
      </form>
    </Dialog>
  );
}
