//! User and role administration.

use crate::ui::server_data::server_data;
use leptos::prelude::*;
use leptos_meta::Title;

use super::keys::short_time;
use super::{ErrorNotice, PageHeader, RequireRole, SECONDARY_BUTTON};
use crate::api::UserRole;
use crate::api::admin::{SetUserRole, UserSummary, list_users};
use crate::use_auth;

#[component]
pub fn UsersPage() -> impl IntoView {
    view! {
        <Title text="Users" />
        <PageHeader title="Users & roles" description="Role changes are recorded in the audit log. You cannot change your own role, and every change takes two admins (a reviewer can release quarantines, an admin can do anything): it takes effect when a second admin makes the same change." />
        <RequireRole roles=&[UserRole::Admin]>
            <UserTable />
        </RequireRole>
    }
}

#[component]
fn UserTable() -> impl IntoView {
    let set_role = ServerAction::<SetUserRole>::new();
    let users = server_data(move || set_role.version().get(), |_| list_users());
    let error = Signal::derive(move || set_role.value().get().and_then(Result::err));
    // A change that became a request says so: nothing else on the page changes yet.
    let requested = move || {
        set_role
            .value()
            .get()
            .and_then(Result::ok)
            .and_then(|user| user.pending.map(|p| (user.email, p)))
    };
    let me = use_auth().current().map(|u| (u.id, u.email));
    view! {
        <div class="mb-4"><ErrorNotice error /></div>
        {move || requested().map(|(email, pending)| view! {
            <div role="status" data-testid="role-requested" class="mb-4 rounded-md border border-amber-300 bg-amber-50 px-4 py-3 text-sm text-amber-950">
                {format!(
                    "Requested: {email} as {}. It takes effect when another admin makes the same change, by {} UTC.",
                    pending.role.label().to_lowercase(),
                    short_time(&pending.expires_at),
                )}
            </div>
        })}
        <section class="overflow-hidden rounded-xl border border-slate-200 bg-white shadow-sm">
            <Transition fallback=|| view! { <p class="px-6 py-4 text-sm text-slate-500">"Loading users…"</p> }>
                {move || {
                    let me = me.clone();
                    Suspend::new(async move {
                        match users.await {
                            Ok(list) => {
                                let (my_id, my_email) = me.unzip();
                                // Who could confirm a pending request: another admin than the
                                // one who asked and the one it is about.
                                let confirmers = |user: &UserSummary| {
                                    let asker = user.pending.as_ref().map(|p| p.requested_by.as_str());
                                    list.iter()
                                        .filter(|u| u.role == UserRole::Admin && u.id != user.id)
                                        .filter(|u| Some(u.email.as_str()) != asker)
                                        .count()
                                };
                                let rows = list
                                    .iter()
                                    .map(|u| {
                                        let is_me = my_id.as_deref() == Some(u.id.as_str());
                                        let asked_by_me = u.pending.as_ref().map(|p| &p.requested_by) == my_email.as_ref();
                                        let confirmers = confirmers(u);
                                        view! { <UserRow user=u.clone() is_me asked_by_me confirmers action=set_role /> }
                                    })
                                    .collect_view();
                                view! {
                                    <table class="min-w-full divide-y divide-slate-200 text-left text-sm" data-testid="users-table">
                                        <thead class="bg-slate-50 text-xs font-medium uppercase tracking-wide text-slate-500">
                                            <tr>
                                                <th scope="col" class="px-6 py-3">"Email"</th>
                                                <th scope="col" class="px-6 py-3">"Joined (UTC)"</th>
                                                <th scope="col" class="px-6 py-3">"Role"</th>
                                            </tr>
                                        </thead>
                                        <tbody class="divide-y divide-slate-100">{rows}</tbody>
                                    </table>
                                }
                                    .into_any()
                            }
                            Err(e) => view! { <div class="p-6"><ErrorNotice error=Signal::stored(Some(e)) /></div> }.into_any(),
                        }
                    })
                }}
            </Transition>
        </section>
    }
}

#[component]
fn UserRow(
    user: UserSummary,
    is_me: bool,
    /// The pending request, if any, is the signed-in admin's own.
    asked_by_me: bool,
    /// How many admins could confirm the pending request.
    confirmers: usize,
    action: ServerAction<SetUserRole>,
) -> impl IntoView {
    let options = UserRole::ALL
        .iter()
        .map(|r| view! { <option value=r.as_str() selected=*r == user.role>{r.label()}</option> })
        .collect_view();
    let joined = short_time(&user.created_at);
    let pending = user.pending.clone().map(|p| {
        let role = p.role.label().to_lowercase();
        let asker = if asked_by_me {
            "You".to_owned()
        } else {
            p.requested_by.clone()
        };
        let note = if is_me {
            format!("{asker} asked to make you {role}.")
        } else {
            format!(
                "{asker} asked for {role}; another admin confirms by making the same change, by {} UTC.",
                short_time(&p.expires_at),
            )
        };
        let operator = (confirmers == 0).then(|| {
            view! {
                " No other admin can confirm it: the operator can, with "
                <code class="rounded bg-amber-50 px-1 font-mono">"cryptopulse set-role"</code>
                "."
            }
        });
        view! { <p class="mt-1 text-xs text-amber-800" data-testid="role-pending">{note}{operator}</p> }
    });
    view! {
        <tr>
            <td class="px-6 py-3 font-medium">{user.email.clone()} {is_me.then(|| view! { <span class="ml-2 text-xs text-slate-500">"(you)"</span> })}</td>
            <td class="px-6 py-3 text-slate-600">{joined}</td>
            <td class="px-6 py-3">
                <ActionForm action attr:class="flex items-center gap-2">
                    <input type="hidden" name="user_id" value=user.id.clone() />
                    <label class="sr-only" for=format!("role-{}", user.id)>{format!("Role for {}", user.email)}</label>
                    <select id=format!("role-{}", user.id) name="role" disabled=is_me class="rounded-md border border-slate-300 bg-white px-2 py-1.5 text-sm">
                        {options}
                    </select>
                    <button type="submit" class=SECONDARY_BUTTON disabled=is_me>"Save"</button>
                </ActionForm>
                {pending}
            </td>
        </tr>
    }
}
