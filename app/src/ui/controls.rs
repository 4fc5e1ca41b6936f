//! `/controls`: the control map (from `crate::controls`, the same table `docs/controls.md` is
//! generated from). Public: it describes the product, not anyone's data, and the table ships in
//! the browser bundle anyway.

use leptos::prelude::*;
use leptos_meta::Title;

use super::PageHeader;
use crate::controls::{Control, Framework, controls_of, test_name, test_path};

#[component]
pub fn ControlsPage() -> impl IntoView {
    let sections = Framework::ALL
        .into_iter()
        .map(|framework| {
            let rows = controls_of(framework).map(control_row).collect_view();
            view! {
                <section class="mb-8" data-testid="control-framework">
                    <h2 class="mb-3 text-lg font-semibold text-slate-900">{framework.label()}</h2>
                    <div class="overflow-x-auto rounded-xl border border-slate-200 bg-white shadow-sm">
                        <table class="min-w-full divide-y divide-slate-200 text-sm">
                            <thead class="bg-slate-50">
                                <tr>
                                    <th scope="col" class="w-28 px-4 py-2 text-left text-xs font-semibold uppercase tracking-wide text-slate-500">"Control"</th>
                                    <th scope="col" class="px-4 py-2 text-left text-xs font-semibold uppercase tracking-wide text-slate-500">"How CryptoPulse meets it"</th>
                                    <th scope="col" class="w-64 px-4 py-2 text-left text-xs font-semibold uppercase tracking-wide text-slate-500">"Evidence (audit actions)"</th>
                                    <th scope="col" class="w-80 px-4 py-2 text-left text-xs font-semibold uppercase tracking-wide text-slate-500">"Proven by"</th>
                                </tr>
                            </thead>
                            <tbody class="divide-y divide-slate-100 align-top">{rows}</tbody>
                        </table>
                    </div>
                </section>
            }
        })
        .collect_view();
    view! {
        <Title text="Control map" />
        <PageHeader
            title="Control map"
            description="Which feature meets which SOC 2, MiFID II RTS 6 and GDPR control, the audit actions whose events evidence it, and the tests that prove it. The same table is in docs/controls.md."
        />
        <div data-testid="control-map">{sections}</div>
    }
}

fn control_row(control: &'static Control) -> impl IntoView {
    let evidence = control
        .evidence
        .iter()
        .map(|a| view! { <li><code class="rounded bg-slate-100 px-1.5 py-0.5 text-xs text-slate-700">{a.as_str()}</code></li> })
        .collect_view();
    let tests = control
        .tests
        .iter()
        .map(|t| {
            view! {
                <li class="leading-snug">
                    <span class="text-slate-800">{test_name(t).replace('_', " ")}</span>
                    <span class="block font-mono text-[11px] text-slate-500">{test_path(t)}</span>
                </li>
            }
        })
        .collect_view();
    let pages = control.pages.join(" · ");
    view! {
        <tr data-testid="control-row">
            <td class="px-4 py-3">
                <div class="font-semibold text-slate-900">{control.reference}</div>
                <div class="mt-0.5 text-xs text-slate-500">{control.framework.short()}</div>
            </td>
            <td class="px-4 py-3">
                <p class="font-medium text-slate-900">{control.requirement}</p>
                <p class="mt-1 text-slate-600">{control.feature}</p>
                <p class="mt-1 text-xs text-slate-500">"Pages: " <span class="font-mono">{pages}</span></p>
            </td>
            <td class="px-4 py-3"><ul class="flex flex-wrap gap-1">{evidence}</ul></td>
            <td class="px-4 py-3"><ul class="space-y-1.5">{tests}</ul></td>
        </tr>
    }
}
