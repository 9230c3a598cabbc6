-- corpus: Supabase-style profiles table: uuid-ossp default, citext username, RLS policy
create table public.profiles (
  id uuid not null default uuid_generate_v4() primary key,
  username citext unique,
  avatar_url text,
  updated_at timestamp with time zone
);
alter table public.profiles enable row level security;
create policy "Public profiles are viewable by everyone." on public.profiles
  for select using (true);
